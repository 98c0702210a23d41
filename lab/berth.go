package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthlb/berth/lab/controlplane"
	"github.com/berthlb/berth/lab/echo"
	"github.com/berthlb/berth/lab/netns"
	"github.com/berthlb/berth/lab/proc"
)

// Berth names the berth binaries built from this checkout.
type Berth struct {
	Controller, Speaker string
}

// BuildTags are the build tags of berth's binaries, as the Makefile's BUILD_TAGS.
// grpcnotrace keeps gRPC (GoBGP's API) from linking golang.org/x/net/trace, whose
// html/template calls methods by reflection: the linker then keeps every exported method
// of every type, which doubles berth-speaker (50 → 100 MB) and adds ~20 MiB resident.
const BuildTags = "grpcnotrace"

// BuildBerth builds berth-controller and berth-speaker from the module containing the
// working directory into dir, static (CGO_ENABLED=0) as make build and the images do.
func BuildBerth(ctx context.Context, dir string) (Berth, error) {
	if err := build(ctx, dir, "", "./cmd/berth-controller", "./cmd/berth-speaker"); err != nil {
		return Berth{}, err
	}
	return Berth{Controller: filepath.Join(dir, "berth-controller"), Speaker: filepath.Join(dir, "berth-speaker")}, nil
}

// BuildRehearsalSpeaker builds into dir a berth-speaker of the "next release": it
// implements and publishes decision version 2 (speaker.NewestVersion), for a rolling
// upgrade in the lab (Installation.SetSpeakerBinary).
func BuildRehearsalSpeaker(ctx context.Context, dir string) (string, error) {
	if err := build(ctx, dir, "-X github.com/berthlb/berth/speaker.rehearsalVersion=2", "./cmd/berth-speaker"); err != nil {
		return "", err
	}
	return filepath.Join(dir, "berth-speaker"), nil
}

// build builds pkgs into dir, static (CGO_ENABLED=0) as the images' (cmd/*/Dockerfile):
// the lab runs what a cluster would.
func build(ctx context.Context, dir, ldflags string, pkgs ...string) error {
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	args := append([]string{"build", "-tags", BuildTags, "-ldflags", ldflags, "-o", dir + "/"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %v: %w\n%s", pkgs, err, out)
	}
	return nil
}

// StartController runs berth-controller on the host with the admin kubeconfig, without
// leader election or a health port (the host's ports are not the lab's).
func (s *Site) StartController(ctx context.Context, bin string, args ...string) (*proc.Process, error) {
	s.mu.Lock()
	s.starts++
	name := "berth-controller-" + strconv.Itoa(s.starts)
	s.mu.Unlock()
	argv := append([]string{"--kubeconfig", s.AdminKubeconfig(), "--leader-elect=false", "--health-bind-address="}, args...)
	return s.network.runner.Start(ctx, proc.Spec{Name: name, Path: bin, Args: argv})
}

// SpeakerSocket is where the speaker on node serves /decisions, reachable from the host.
func (s *Site) SpeakerSocket(node string) string {
	return filepath.Join(s.network.Dir, "speaker-"+node+".sock")
}

// StartSpeaker runs berth-speaker in node's namespace, as a DaemonSet Pod with
// hostNetwork would: memberlist on the node address, /decisions on SpeakerSocket. It
// returns once the socket answers.
func (s *Site) StartSpeaker(ctx context.Context, bin, node string, args ...string) (*proc.Process, error) {
	n := s.network.Node(node)
	if n == nil {
		return nil, fmt.Errorf("start speaker: no node %s", node)
	}
	s.mu.Lock()
	s.starts++
	name := "berth-speaker-" + node + "-" + strconv.Itoa(s.starts)
	s.mu.Unlock()
	return s.startSpeaker(ctx, bin, n, name, containerSecurity{}, append([]string{"--kubeconfig", s.AdminKubeconfig()}, args...))
}

// startSpeaker runs berth-speaker as process name in node n, under sec, and waits for its
// socket.
func (s *Site) startSpeaker(ctx context.Context, bin string, n *Node, name string, sec containerSecurity, args []string) (*proc.Process, error) {
	sock := s.SpeakerSocket(n.Name)
	argv := append([]string{"--node-name", n.Name, "--memberlist-bind-address", n.Addr4.String(),
		"--decisions-socket", sock}, args...)
	p, err := s.network.runner.Start(ctx, proc.Spec{Name: name, Path: bin, Args: argv, NetNS: string(n.NS),
		// The socket's directory stands for a volume of the Pod (writable).
		Capabilities: sec.Capabilities, ReadOnlyRoot: sec.ReadOnlyRoot, Writable: []string{filepath.Dir(sock)}})
	if err != nil {
		return nil, err
	}
	for {
		if _, err := AskSocket(ctx, sock, "/decisions"); err == nil {
			return p, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("speaker on %s exited: %v\n%s", n.Name, p.State(), tail(p.Log(), 40))
		case <-ctx.Done():
			_ = p.Stop(time.Second)
			return nil, fmt.Errorf("speaker on %s: wait for %s: %w", n.Name, sock, ctx.Err())
		case <-time.After(waitStep):
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// StartProber runs a UDP prober from ns to addr every interval (echo.ProbeSpec, or
// echo.FreshProbeSpec with fresh: a new source port per datagram) under the site's
// runner, so that the run directory records it. Read its replies with
// echo.ParseProbeLog(p.Log()); stop it with p.Stop.
func (s *Site) StartProber(ctx context.Context, ns netns.NS, addr netip.AddrPort, interval time.Duration, fresh bool) (*proc.Process, error) {
	s.mu.Lock()
	s.starts++
	name := "probe-" + strconv.Itoa(s.starts)
	s.mu.Unlock()
	spec := echo.ProbeSpec
	if fresh {
		spec = echo.FreshProbeSpec
	}
	sp, err := spec(name, ns, addr, interval)
	if err != nil {
		return nil, err
	}
	return s.network.runner.Start(ctx, sp)
}
