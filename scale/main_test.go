//go:build scale

package scale

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/lab/controlplane"
)

// bin are berth's binaries, built once for every scenario; baselineBin is the
// yardstick of the BGP scenario (controller/internal/baseline).
var (
	bin         lab.Berth
	baselineBin string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "scale: needs root (network namespaces, routers): run `sudo make bench`")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "berth-scale-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	bin, err = lab.BuildBerth(ctx, dir)
	if err == nil {
		baselineBin = filepath.Join(dir, "baseline")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", baselineBin, "./controller/internal/baseline")
		if root, rerr := controlplane.RepoRoot(); rerr == nil {
			cmd.Dir = root
		}
		if out, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("%w: %s", berr, out)
		}
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale: build berth:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
