package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/proc"
	"github.com/berthlb/berth/lab/router"
)

// Names deploy/base gives berth: its namespace and the ServiceAccounts the binaries run as.
const (
	BerthNamespace    = "berth-system"
	ControllerAccount = "berth-controller"
	SpeakerAccount    = "berth-speaker"
	// MemberlistSecret holds the speakers' memberlist key (controller.MemberlistSecretName;
	// lab does not import berth's packages).
	MemberlistSecret = "berth-memberlist"
)

// NodeASN is the nodes' AS in deploy/lab/demo: eBGP to FRR (64500) and BIRD (64501).
const NodeASN = 64512

// InstallOptions configure InstallBerth.
type InstallOptions struct {
	// Bin are berth's binaries.
	Bin Berth
	// DeployDir is the repository's deploy/ directory.
	DeployDir string
	// Demo also applies deploy/lab/demo (pools, advertisements, peers, the demo app) and
	// adds every node as a neighbour of FRR and BIRD over IPv4 and IPv6.
	Demo bool
	// ControllerArgs and SpeakerArgs are added to the binaries' command lines.
	ControllerArgs, SpeakerArgs []string
}

// Installation is berth running on a site: installed from deploy/ with kubectl, the
// controller on the host and a speaker in every node, each with its ServiceAccount's
// token and restarted with backoff when it exits (Supervised).
type Installation struct {
	Controller *Supervised
	Speakers   map[string]*Supervised // by node name

	site           *Site
	bin            string
	controllerSec  containerSecurity
	controllerArgs []string

	mu         sync.Mutex
	replicas   []*Supervised     // StartController's
	speakerBin map[string]string // SetSpeakerBinary's, by node
}

// SetSpeakerBinary makes node's speaker run bin from its next start on (Supervised.Stop
// and Start restart it): a rolling upgrade, one node at a time. Empty goes back to the
// installed binary.
func (in *Installation) SetSpeakerBinary(node, bin string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.speakerBin[node] = bin
}

func (in *Installation) speakerBinary(node, installed string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return cmp.Or(in.speakerBin[node], installed)
}

// ControllerIdentity is the first controller's --leader-elect-identity, the holder of
// berth-controller's Lease while it leads.
const ControllerIdentity = "lab"

// InstallBerth installs berth on the site and starts its binaries; they run until Close.
// The controller elects a leader on its Lease as in a cluster, but serves no health port
// (the host's ports are not the lab's).
func (s *Site) InstallBerth(ctx context.Context, o InstallOptions) (*Installation, error) {
	if err := s.Kubectl(ctx, "apply", "--server-side", "-k", filepath.Join(o.DeployDir, "base")); err != nil {
		return nil, err
	}
	if err := s.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return nil, err
	}
	// RBAC reaches the apiserver's authorizer through its informers: wait until it grants
	// the binaries their first calls, so that no start-up request is refused.
	// Cluster-wide and namespaced grants reach it separately: check one of each.
	for _, c := range []struct{ sa, verb, resource string }{
		{ControllerAccount, "list", "services"}, {ControllerAccount, "create", "leases"},
		{SpeakerAccount, "list", "services"}, {SpeakerAccount, "get", "secrets"},
	} {
		as := "--as=system:serviceaccount:" + BerthNamespace + ":" + c.sa
		if err := wait.PollUntilContextCancel(ctx, waitStep, true, func(ctx context.Context) (bool, error) {
			return s.Kubectl(ctx, "auth", "can-i", c.verb, c.resource, "-n", BerthNamespace, as) == nil, nil
		}); err != nil {
			return nil, fmt.Errorf("install berth: RBAC of %s (%s %s) not in effect: %w", c.sa, c.verb, c.resource, err)
		}
	}
	if o.Demo {
		if err := s.addNodesToRouters(ctx); err != nil {
			return nil, err
		}
		if err := s.Kubectl(ctx, "apply", "--server-side", "-k", filepath.Join(o.DeployDir, "lab", "demo")); err != nil {
			return nil, err
		}
	}

	speakerSec, controllerSec, err := s.deploySecurity(ctx, o.DeployDir)
	if err != nil {
		return nil, err
	}

	in := &Installation{Speakers: map[string]*Supervised{}, speakerBin: map[string]string{}, site: s, bin: o.Bin.Controller,
		controllerSec: controllerSec, controllerArgs: o.ControllerArgs}
	c, err := in.superviseController(ctx, "berth-controller", ControllerIdentity)
	if err != nil {
		return nil, fmt.Errorf("install berth: %w", err)
	}
	in.Controller = c
	// The speakers refuse to start without the memberlist key, which the controller
	// creates once it leads (in a cluster they would crash-loop until then).
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := wait.PollUntilContextCancel(wctx, waitStep, true, func(ctx context.Context) (bool, error) {
		_, err := s.Client().CoreV1().Secrets(BerthNamespace).Get(ctx, MemberlistSecret, metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return nil, errors.Join(fmt.Errorf("install berth: berth-controller made no Secret %s/%s: %w\n%s",
			BerthNamespace, MemberlistSecret, err, tail(c.Process().Log(), 20)), in.Close())
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, n := range s.network.Nodes {
		wg.Go(func() {
			name := "berth-speaker-" + n.Name
			sp, err := supervise(ctx, s.life, name, func(ctx context.Context) (*proc.Process, error) {
				kubeconfig, err := s.tokenKubeconfig(ctx, SpeakerAccount)
				if err != nil {
					return nil, err
				}
				return s.startSpeaker(ctx, in.speakerBinary(n.Name, o.Bin.Speaker), n, name, speakerSec, append([]string{"--kubeconfig", kubeconfig}, o.SpeakerArgs...))
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			in.Speakers[n.Name] = sp
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(fmt.Errorf("install berth: %w", err), in.Close())
	}
	return in, nil
}

// superviseController runs berth-controller as process name, electing a leader with
// identity, under supervision.
func (in *Installation) superviseController(ctx context.Context, name, identity string) (*Supervised, error) {
	s := in.site
	return supervise(ctx, s.life, name, func(ctx context.Context) (*proc.Process, error) {
		kubeconfig, err := s.tokenKubeconfig(ctx, ControllerAccount)
		if err != nil {
			return nil, err
		}
		argv := append([]string{"--kubeconfig", kubeconfig, "--health-bind-address=",
			"--leader-elect-identity=" + identity}, in.controllerArgs...)
		return s.network.runner.Start(ctx, proc.Spec{Name: name, Path: in.bin, Args: argv,
			ReadOnlyRoot: in.controllerSec.ReadOnlyRoot})
	})
}

// StartController starts another replica of berth-controller, as a Deployment with two
// replicas would run: with its own --leader-elect-identity (not ControllerIdentity), the
// same ServiceAccount and arguments, supervised, as process berth-controller-<identity>.
// It returns once the process runs; it leads only if it wins the Lease. Close the replica
// when done (Installation.Close does too).
func (in *Installation) StartController(ctx context.Context, identity string) (*Supervised, error) {
	if identity == ControllerIdentity {
		return nil, fmt.Errorf("start controller: identity %q is the first controller's", identity)
	}
	c, err := in.superviseController(ctx, "berth-controller-"+identity, identity)
	if err != nil {
		return nil, fmt.Errorf("start controller %s: %w", identity, err)
	}
	in.mu.Lock()
	in.replicas = append(in.replicas, c)
	in.mu.Unlock()
	return c, nil
}

// Close stops berth's binaries and their supervision (the site's Close does it too).
func (in *Installation) Close() error {
	var errs []error
	if in.Controller != nil {
		errs = append(errs, in.Controller.Close())
	}
	in.mu.Lock()
	replicas := in.replicas
	in.mu.Unlock()
	for _, c := range replicas {
		errs = append(errs, c.Close())
	}
	for _, sp := range in.Speakers {
		errs = append(errs, sp.Close())
	}
	return errors.Join(errs...)
}

// containerSecurity is what the lab applies of a container's securityContext.
type containerSecurity struct {
	Capabilities []string // run as root with only these; nil: as the lab's root
	ReadOnlyRoot bool
}

// deploySecurity reads the securityContexts of berth's containers in deploy/default
// (kubectl kustomize; the chart is held equal to it): the lab runs its speakers as root
// with exactly the capabilities the container is given and both binaries on a read-only
// root, so something berth needs but the manifests lack fails the lab's tests. (The
// controller keeps the lab's UID: it reads a kubeconfig only root can.) A non-root
// speaker could not get capabilities from Kubernetes.
func (s *Site) deploySecurity(ctx context.Context, deployDir string) (speaker, controller containerSecurity, err error) {
	out, err := s.KubectlOutput(ctx, "kustomize", filepath.Join(deployDir, "default"))
	if err != nil {
		return speaker, controller, err
	}
	var foundSpeaker, foundController bool
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var obj struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return speaker, controller, fmt.Errorf("deploy/default: %w", err)
		}
		for _, c := range obj.Spec.Template.Spec.Containers {
			sc := c.SecurityContext
			switch {
			case obj.Kind == "DaemonSet" && obj.Metadata.Name == "berth-speaker" && c.Name == "speaker":
				if sc == nil || sc.Capabilities == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 || !slices.Contains(sc.Capabilities.Drop, "ALL") {
					return speaker, controller, errors.New("deploy/default: the speaker container must run as user 0 and drop ALL capabilities before adding some")
				}
				for _, c := range sc.Capabilities.Add {
					speaker.Capabilities = append(speaker.Capabilities, string(c))
				}
				speaker.ReadOnlyRoot = ptr.Deref(sc.ReadOnlyRootFilesystem, false)
				foundSpeaker = true
			case obj.Kind == "Deployment" && obj.Metadata.Name == "berth-controller" && c.Name == "controller":
				controller.ReadOnlyRoot = sc != nil && ptr.Deref(sc.ReadOnlyRootFilesystem, false)
				foundController = true
			}
		}
	}
	if !foundSpeaker || !foundController {
		return speaker, controller, errors.New("deploy/default: no DaemonSet berth-speaker with a speaker container, or no Deployment berth-controller with a controller container")
	}
	return speaker, controller, nil
}

// tokenKubeconfig writes a kubeconfig with a fresh token of berth's ServiceAccount sa: a
// binary restarted after a day (a lab left running) must not start with an expired one.
func (s *Site) tokenKubeconfig(ctx context.Context, sa string) (string, error) {
	return s.cluster.ServiceAccountKubeconfig(ctx, BerthNamespace, sa, false)
}

// addNodesToRouters makes every node an eBGP neighbour (AS NodeASN) of FRR and BIRD, over
// IPv4 and IPv6, as deploy/lab/demo's BGPPeers expect.
func (s *Site) addNodesToRouters(ctx context.Context) error {
	n := s.network
	if n.FRR == nil || n.BIRD == nil {
		return errors.New("install berth: the demo needs the site's routers (NoRouters is set)")
	}
	for _, node := range n.Nodes {
		for _, a := range []router.Neighbor{{Addr: node.Addr4, ASN: NodeASN}, {Addr: node.Addr6, ASN: NodeASN}} {
			if err := n.FRR.AddNeighbor(ctx, a); err != nil {
				return fmt.Errorf("install berth: %w", err)
			}
			if err := n.BIRD.AddNeighbor(ctx, a); err != nil {
				return fmt.Errorf("install berth: %w", err)
			}
		}
	}
	return nil
}

// Kubectl runs the control plane's kubectl as the admin and returns its output in the
// error when it fails.
func (s *Site) Kubectl(ctx context.Context, args ...string) error {
	_, err := s.KubectlOutput(ctx, args...)
	return err
}

// KubectlOutput runs the control plane's kubectl as the admin and returns its standard
// output.
func (s *Site) KubectlOutput(ctx context.Context, args ...string) (string, error) {
	bin := filepath.Join(s.cluster.BinDir, controlplane.Kubectl)
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", s.AdminKubeconfig()}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// waitStep is how often the lab polls while it waits for a condition.
const waitStep = 20 * time.Millisecond
