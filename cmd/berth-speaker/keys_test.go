package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/controller"
	"github.com/berthlb/berth/speaker/membership"
)

func TestPrimaryEntryIsTheControllersKey(t *testing.T) {
	if controller.MemberlistSecretKey != membership.PrimaryEntry {
		t.Errorf("berth-controller writes the key as %q, the speaker reads the primary from %q",
			controller.MemberlistSecretKey, membership.PrimaryEntry)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// kubeletVersion writes one version of a mounted Secret the way the kubelet's atomic
// writer lays it out: the files in a timestamped directory, ..data linking to it (swapped
// by a rename), and each name a link through ..data.
func kubeletVersion(t *testing.T, dir, version string, files map[string]string) {
	t.Helper()
	ts := "..2026_11_26_13_00_00." + version
	for name, content := range files {
		writeFile(t, filepath.Join(dir, ts, name), content)
		if _, err := os.Lstat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func TestReadKeyDir(t *testing.T) {
	t.Run("plain directory", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "key"), "primary")
		writeFile(t, filepath.Join(dir, "previous"), "old")
		writeFile(t, filepath.Join(dir, ".hidden"), "skipped")
		writeFile(t, filepath.Join(dir, "sub", "x"), "skipped")
		got, err := readKeyDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]byte{"key": []byte("primary"), "previous": []byte("old")}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("readKeyDir() (-want +got):\n%s", d)
		}
	})
	t.Run("mounted Secret", func(t *testing.T) {
		dir := t.TempDir()
		kubeletVersion(t, dir, "1", map[string]string{"key": "old"})
		got, err := readKeyDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(map[string][]byte{"key": []byte("old")}, got); d != "" {
			t.Errorf("readKeyDir(version 1) (-want +got):\n%s", d)
		}
		kubeletVersion(t, dir, "2", map[string]string{"key": "new", "previous": "old"})
		got, err = readKeyDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(map[string][]byte{"key": []byte("new"), "previous": []byte("old")}, got); d != "" {
			t.Errorf("readKeyDir(version 2) (-want +got):\n%s", d)
		}
	})
	if _, err := readKeyDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("readKeyDir(missing directory): no error")
	}
}

// fakeList records the entries it is offered and checks them as membership.List does.
type fakeList struct {
	mu      sync.Mutex
	offered []map[string][]byte
	calls   chan struct{}
}

func (l *fakeList) UpdateKeys(entries map[string][]byte) (membership.KeyChange, error) {
	l.mu.Lock()
	l.offered = append(l.offered, entries)
	l.mu.Unlock()
	if l.calls != nil {
		l.calls <- struct{}{}
	}
	k, err := membership.KeysFrom(entries)
	if err != nil {
		return membership.KeyChange{}, err
	}
	return membership.KeyChange{Primary: membership.Fingerprint(k.Primary), Added: []string{membership.Fingerprint(k.Primary)},
		Risks: []membership.KeyRisk{membership.KeyRiskOldPrimaryDropped}}, nil
}

// logLines captures a klog.Logger's lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func newFollower(t *testing.T, list keySetter) (*keyFollower, *logLines, *[]error) {
	t.Helper()
	var lines logLines
	var rejected []error
	f := &keyFollower{list: list, source: "test", reject: func(err error) { rejected = append(rejected, err) },
		logger: funcr.New(func(prefix, args string) {
			lines.mu.Lock()
			lines.lines = append(lines.lines, args)
			lines.mu.Unlock()
		}, funcr.Options{})}
	return f, &lines, &rejected
}

func TestKeyFollower(t *testing.T) {
	key := bytes.Repeat([]byte{'k'}, 32)
	list := &fakeList{}
	f, lines, rejected := newFollower(t, list)

	f.offer(map[string][]byte{"key": key})
	f.offer(map[string][]byte{"key": key}) // unchanged: not offered again
	if len(list.offered) != 1 {
		t.Errorf("UpdateKeys called %d times for the same entries twice, want 1", len(list.offered))
	}
	for _, want := range []string{"Memberlist keys changed", membership.Fingerprint(key), string(membership.KeyRiskOldPrimaryDropped),
		"keep it as an extra entry"} {
		if !strings.Contains(lines.text(), want) {
			t.Errorf("log lacks %q:\n%s", want, lines.text())
		}
	}
	if strings.Contains(lines.text(), string(key)) {
		t.Errorf("log reveals the key:\n%s", lines.text())
	}

	bad := map[string][]byte{"key": key, "next": []byte("short")}
	f.offer(bad)
	f.offer(bad) // reported once
	if len(*rejected) != 1 || !errors.Is((*rejected)[0], membership.ErrInvalidKey) || !strings.Contains((*rejected)[0].Error(), `entry "next": 5 bytes`) {
		t.Errorf("rejections = %v, want one ErrInvalidKey naming entry next", *rejected)
	}
	if !strings.Contains(lines.text(), "Memberlist keys rejected; the keys in use stay") {
		t.Errorf("log lacks the rejection:\n%s", lines.text())
	}

	before := len(lines.lines)
	f.readFailed(errors.New("gone"))
	f.readFailed(errors.New("gone"))
	if n := len(lines.lines) - before; n != 1 {
		t.Errorf("a read error repeated logged %d lines, want 1", n)
	}
	f.offer(map[string][]byte{"key": key}) // back to the good keys: offered again
	if len(list.offered) != 3 {
		t.Errorf("UpdateKeys called %d times, want 3", len(list.offered))
	}
}

// TestPollKeysFollowsMountedSecret: a new version of the mounted Secret reaches the keyring
// within one poll.
func TestPollKeysFollowsMountedSecret(t *testing.T) {
	dir := t.TempDir()
	oldKey, newKey := strings.Repeat("o", 32), strings.Repeat("n", 32)
	kubeletVersion(t, dir, "1", map[string]string{"key": oldKey})
	list := &fakeList{calls: make(chan struct{}, 10)}
	f, _, _ := newFollower(t, list)
	done := make(chan struct{})
	t.Cleanup(func() { <-done }) // t.Context ends first
	go func() {
		defer close(done)
		pollKeys(t.Context(), f, func() (map[string][]byte, error) { return readKeyDir(dir) }, 10*time.Millisecond)
	}()
	<-list.calls
	kubeletVersion(t, dir, "2", map[string]string{"key": oldKey, "next": newKey})
	select {
	case <-list.calls:
	case <-time.After(5 * time.Second):
		t.Fatal("the new version was not offered within 5 s")
	}
	list.mu.Lock()
	got := list.offered[len(list.offered)-1]
	list.mu.Unlock()
	if d := cmp.Diff(map[string][]byte{"key": []byte(oldKey), "next": []byte(newKey)}, got); d != "" {
		t.Errorf("offered (-want +got):\n%s", d)
	}
}
