package controlplane

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testdata/audit.log holds lines of a real run's audit log, and a last line cut short as
// the apiserver may leave it while writing.
func TestForbidden(t *testing.T) {
	events, err := ReadAuditFile("testdata/audit.log")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 5 {
		t.Fatalf("read %d events, want 5 (the partial last line skipped)", len(events))
	}
	got := map[string][]string{}
	for u, evs := range Forbidden(events, ServiceAccountsIn("default")) {
		for _, e := range evs {
			got[u] = append(got[u], e.String())
		}
	}
	want := map[string][]string{"system:serviceaccount:default:probe": {
		"system:serviceaccount:default:probe get secrets kube-system/x (403)",
		"system:serviceaccount:default:probe list pods default/ (403)",
	}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Forbidden() (-want +got):\n%s", d)
	}
	if f := Forbidden(events, ServiceAccountsIn("kube-system")); len(f) != 0 {
		t.Errorf("Forbidden(kube-system) = %v, want none", f)
	}
	if f := Forbidden(events, nil); len(f["system:serviceaccount:default:probe"]) != 2 || len(f) != 1 {
		t.Errorf("Forbidden(all) = %v, want the probe's two", f)
	}
}

// TestForbiddenWarmup: Cluster.Forbidden leaves out what the apiserver refused while it
// was starting (the probe's first 403 here), and keeps what it refused when ready.
func TestForbiddenWarmup(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	c := &Cluster{AuditLog: "testdata/audit.log",
		warmups: []window{{from: at("2026-11-25T19:17:50Z"), to: at("2026-11-25T19:17:57Z")}}}
	f, err := c.Forbidden(ServiceAccountsIn("default"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range f["system:serviceaccount:default:probe"] {
		got = append(got, e.String())
	}
	if d := cmp.Diff([]string{"system:serviceaccount:default:probe list pods default/ (403)"}, got); d != "" {
		t.Errorf("Forbidden() after a warm-up (-want +got):\n%s", d)
	}
	c.warmups = append(c.warmups, window{from: at("2026-11-25T19:17:57Z")}) // starting still
	if f, err := c.Forbidden(nil); err != nil || len(f) != 0 {
		t.Errorf("Forbidden() during a warm-up = %v, %v; want none", f, err)
	}
}

func TestReadAuditMalformed(t *testing.T) {
	_, err := ReadAudit(strings.NewReader("{\"stage\":\"ResponseComplete\"}\nnot json\n"))
	if !errors.Is(err, ErrAuditLine) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("ReadAudit(bad line 2) = %v, want ErrAuditLine naming line 2", err)
	}
}

// FuzzReadAudit: whatever parses survives a round trip through JSON unchanged.
func FuzzReadAudit(f *testing.F) {
	seed, err := os.ReadFile("testdata/audit.log")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("{}\n\n{\"responseStatus\":{\"code\":403}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := ReadAudit(bytes.NewReader(b))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		for _, e := range events {
			line, err := json.Marshal(e)
			if err != nil {
				t.Fatalf("marshal %+v: %v", e, err)
			}
			buf.Write(append(line, '\n'))
		}
		again, err := ReadAudit(&buf)
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if d := cmp.Diff(events, again); d != "" {
			t.Errorf("round trip (-first +second):\n%s", d)
		}
	})
}
