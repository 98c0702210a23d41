//go:build privileged

package proc

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/lab/internal/tool"
)

// TestNetNSAndUser starts a program in a namespace as another user and checks that the
// recorded PID is the program's own, not ip's or setpriv's.
func TestNetNSAndUser(t *testing.T) {
	if err := tool.Require(tool.IP, tool.Setpriv); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	ns := "bl" + hex.EncodeToString(b) + "-proc"
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	r := newRunner(t)
	p, err := r.Start(t.Context(), Spec{Name: "sleeper", Path: "sleep", Args: []string{"60"}, NetNS: ns, User: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	proc := "/proc/" + strconv.Itoa(p.PID())
	waitExe(t, proc, "sleep")
	want, err := nsInode("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(proc + "/ns/net"); got != "net:["+want+"]" {
		t.Errorf("pid %d is in %s, want net:[%s]", p.PID(), got, want)
	}
	status, _ := os.ReadFile(proc + "/status")
	if !strings.Contains(string(status), "Uid:\t65534\t65534") {
		t.Errorf("pid %d is not running as nobody:\n%s", p.PID(), status)
	}
	if err := p.Stop(2 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitExe waits until proc's executable is base (ip and setpriv exec it right away).
func waitExe(t *testing.T, proc, base string) {
	t.Helper()
	var exe string
	for range 500 {
		exe, _ = os.Readlink(proc + "/exe")
		if filepath.Base(exe) == base {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s runs %q, want %s", proc, exe, base)
}

func nsInode(path string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", err
	}
	return strconv.FormatUint(st.Ino, 10), nil
}

// TestCapabilities: a program started with Capabilities has exactly those, in every set
// that matters (permitted, effective, bounding), none inheritable, and no_new_privs.
func TestCapabilities(t *testing.T) {
	if err := tool.Require(tool.Setpriv); err != nil {
		t.Fatal(err)
	}
	r := newRunner(t)
	p, err := r.Start(t.Context(), Spec{Name: "caps", Path: "grep", Args: []string{"-E", "^(Cap|NoNewPrivs)", "/proc/self/status"},
		Capabilities: []string{"NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	// NET_BIND_SERVICE is bit 10, NET_ADMIN 12, NET_RAW 13.
	for _, want := range []string{"CapInh:\t0000000000000000", "CapPrm:\t0000000000003400",
		"CapEff:\t0000000000003400", "CapBnd:\t0000000000003400", "NoNewPrivs:\t1"} {
		if !strings.Contains(p.Log(), want) {
			t.Errorf("no %q in:\n%s", want, p.Log())
		}
	}
}

// TestReadOnlyRoot: with ReadOnlyRoot the program cannot write outside /proc, /sys, /dev
// and its Writable directories (its log, opened by the Runner, still works), keeps its PID, and the host's mounts
// stay writable.
func TestReadOnlyRoot(t *testing.T) {
	if err := tool.Require(tool.Setpriv); err != nil {
		t.Fatal(err)
	}
	r := newRunner(t)
	dir, volume := t.TempDir(), t.TempDir()
	script := `echo pid $$; touch ` + dir + `/x && echo wrote; : > /dev/null && echo dev ok; touch ` + volume + `/v && echo volume ok`
	p, err := r.Start(t.Context(), Spec{Name: "ro", Path: "sh", Args: []string{"-c", script},
		Capabilities: []string{"NET_ADMIN"}, ReadOnlyRoot: true, Writable: []string{volume}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	log := p.Log()
	if !strings.Contains(log, "Read-only file system") || strings.Contains(log, "wrote") {
		t.Errorf("the write under %s was not refused:\n%s", dir, log)
	}
	if !strings.Contains(log, "dev ok") || !strings.Contains(log, "volume ok") {
		t.Errorf("/dev or the Writable directory was not writable:\n%s", log)
	}
	if want := "pid " + strconv.Itoa(p.PID()); !strings.Contains(log, want) {
		t.Errorf("the program's PID is not the recorded %d:\n%s", p.PID(), log)
	}
	if err := os.WriteFile(filepath.Join(dir, "y"), nil, 0o644); err != nil {
		t.Errorf("the host's mount became read-only: %v", err)
	}
}
