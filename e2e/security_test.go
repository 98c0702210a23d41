//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestContainerSecurity: the lab runs berth as deploy/'s securityContexts say, so that
// everything else in this suite shows berth works under them: each speaker as root with
// only NET_ADMIN, NET_RAW and NET_BIND_SERVICE, unable to gain more, and both binaries on
// a read-only root.
func TestContainerSecurity(t *testing.T) {
	// NET_BIND_SERVICE is bit 10, NET_ADMIN 12, NET_RAW 13.
	const speakerCaps = "0000000000003400"
	for node, sp := range env.berth.Speakers {
		pid := sp.Process().PID()
		status := procStatus(t, pid)
		for k, want := range map[string]string{"Uid": "0", "CapEff": speakerCaps, "CapPrm": speakerCaps,
			"CapBnd": speakerCaps, "CapInh": "0000000000000000", "NoNewPrivs": "1"} {
			if got := status[k]; got != want {
				t.Errorf("speaker on %s (pid %d): %s is %q, want %q", node, pid, k, got, want)
			}
		}
		if opts := rootMountOptions(t, pid); !strings.HasPrefix(opts, "ro") {
			t.Errorf("speaker on %s (pid %d): / is mounted %q, want read-only", node, pid, opts)
		}
	}
	pid := env.berth.Controller.Process().PID()
	if opts := rootMountOptions(t, pid); !strings.HasPrefix(opts, "ro") {
		t.Errorf("controller (pid %d): / is mounted %q, want read-only", pid, opts)
	}
}

// procStatus returns /proc/PID/status's fields (the first word of each value).
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if f := strings.Fields(v); ok && len(f) > 0 {
			out[k] = f[0]
		}
	}
	return out
}

// rootMountOptions returns the per-mount options of / as the process sees it.
func rootMountOptions(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ...; the last / mount wins.
		if f := strings.Fields(sc.Text()); len(f) > 5 && f[4] == "/" {
			opts = f[5]
		}
	}
	if opts == "" {
		t.Fatalf("no / in /proc/%d/mountinfo", pid)
	}
	return opts
}
