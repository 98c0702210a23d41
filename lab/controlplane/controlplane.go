// Package controlplane runs a real Kubernetes control plane built from pinned modules by
// `make controlplane`. Start wraps envtest (etcd and kube-apiserver) for integration tests
// that only need the API; Up runs the lab's whole control plane (etcd, kube-apiserver with
// RBAC and an audit log, kube-controller-manager, kube-scheduler) with its own PKI, issues
// kubeconfigs for users and ServiceAccounts, and starts kube-proxy in node namespaces.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// MakeTarget builds the binaries this package needs.
const MakeTarget = "make controlplane"

// DirEnv overrides where the binaries are looked up.
const DirEnv = "BERTH_CONTROLPLANE_DIR"

// ServiceCIDRs are the lab's Service cluster IP ranges (DESIGN.md, addressing).
const ServiceCIDRs = "198.18.128.0/17,2001:db8:96::/108"

// ErrBinariesMissing means the control-plane binaries have not been built.
var ErrBinariesMissing = errors.New("control-plane binaries missing")

// BinDir returns the directory holding etcd, kube-apiserver and the other control-plane
// binaries: $BERTH_CONTROLPLANE_DIR, or the version-keyed cache hack/controlplane/build.sh
// fills. It fails, naming the make target, when the binaries are not there.
func BinDir() (string, error) {
	dir := os.Getenv(DirEnv)
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		out, err := exec.Command("bash", filepath.Join(root, "hack/controlplane/build.sh"), "--dir").Output()
		if err != nil {
			return "", fmt.Errorf("locate control-plane binaries: %w", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%w: %s not found in %s: run `%s`", ErrBinariesMissing, b, dir, MakeTarget)
		}
	}
	return dir, nil
}

// BuildBinaries runs hack/controlplane/build.sh, which builds the binaries from the pinned
// modules when they are missing (minutes, the first time), and returns their directory.
// Its progress goes to progress.
func BuildBinaries(ctx context.Context, progress io.Writer) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack/controlplane/build.sh"))
	cmd.Stderr = progress
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build the control-plane binaries: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// RepoRoot is the berth checkout holding the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack/controlplane/build.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("hack/controlplane/build.sh not found above the working directory; set %s", DirEnv)
		}
		dir = parent
	}
}

// CRDDir is the directory of berth's generated CRDs, for WithCRDs.
func CRDDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "config/crd"), nil
}

type options struct {
	crdDirs []string
}

// Option configures Start.
type Option func(*options)

// WithCRDs installs the CRDs found in dirs before Start returns.
func WithCRDs(dirs ...string) Option {
	return func(o *options) { o.crdDirs = append(o.crdDirs, dirs...) }
}

// WithBerthCRDs installs berth's own CRDs.
func WithBerthCRDs() Option {
	return func(o *options) {
		dir, err := CRDDir()
		if err != nil {
			panic(err) // only reachable outside the repository, where no test runs
		}
		o.crdDirs = append(o.crdDirs, dir)
	}
}

// ControlPlane is a running etcd + kube-apiserver.
type ControlPlane struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	env    *envtest.Environment
}

// Start starts etcd and kube-apiserver on loopback with free ports and the lab's Service
// CIDRs, and stops them when the test ends. It fails the test, naming the make target, when
// the binaries are missing; it never skips.
func Start(t testing.TB, opts ...Option) *ControlPlane {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     o.crdDirs,
		ErrorIfCRDPathMissing: true,
	}
	api := env.ControlPlane.GetAPIServer()
	api.Configure().Set("service-cluster-ip-range", ServiceCIDRs)
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start control plane from %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return &ControlPlane{Config: cfg, env: env}
}
