package lab

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
}

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
	kubeconfig := map[string]string{}
	for _, sa := range []string{ControllerAccount, SpeakerAccount} {
		path, err := s.cluster.ServiceAccountKubeconfig(ctx, BerthNamespace, sa, false)
		if err != nil {
			return nil, fmt.Errorf("install berth: %w", err)
		}
		kubeconfig[sa] = path
	}
	if o.Demo {
		if err := s.addNodesToRouters(ctx); err != nil {
			return nil, err
		}
		if err := s.Kubectl(ctx, "apply", "--server-side", "-k", filepath.Join(o.DeployDir, "lab", "demo")); err != nil {
			return nil, err
		}
	}

	in := &Installation{Speakers: map[string]*Supervised{}}
	life := s.life
	c, err := supervise(ctx, life, "berth-controller", func(ctx context.Context) (*proc.Process, error) {
		argv := append([]string{"--kubeconfig", kubeconfig[ControllerAccount], "--health-bind-address=",
			"--leader-elect-identity=lab"}, o.ControllerArgs...)
		return s.network.runner.Start(ctx, proc.Spec{Name: "berth-controller", Path: o.Bin.Controller, Args: argv})
	})
	if err != nil {
		return nil, fmt.Errorf("install berth: %w", err)
	}
	in.Controller = c
	// The speakers refuse to start without the memberlist key, which the controller
	// creates once it leads (in a cluster they would crash-loop until then).
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := poll(wctx, func(ctx context.Context) (bool, error) {
		_, err := s.Client().CoreV1().Secrets(BerthNamespace).Get(ctx, MemberlistSecret, metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("install berth: berth-controller made no Secret %s/%s: %w\n%s",
			BerthNamespace, MemberlistSecret, err, tail(c.Process().Log(), 20))
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, n := range s.network.Nodes {
		wg.Go(func() {
			sp, err := supervise(ctx, life, "berth-speaker-"+n.Name, func(ctx context.Context) (*proc.Process, error) {
				return s.startSpeaker(ctx, o.Bin.Speaker, n, "berth-speaker-"+n.Name,
					append([]string{"--kubeconfig", kubeconfig[SpeakerAccount]}, o.SpeakerArgs...))
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
		return nil, fmt.Errorf("install berth: %w", err)
	}
	return in, nil
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
