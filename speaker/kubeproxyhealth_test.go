package speaker

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestKubeProxyHealth checks a real HTTP health endpoint: a node counts healthy until
// unhealthyAfter checks fail, comes back with one success, and each flip is told.
func TestKubeProxyHealth(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	ap := netip.MustParseAddrPort(srv.Listener.Addr().String())
	flips := make(chan struct{}, 8)
	h := newKubeProxyHealth(int(ap.Port()), func() { flips <- struct{}{} })
	h.SetTargets([]ProxyNode{{Name: "n2", Addrs: []netip.Addr{ap.Addr()}}})
	go h.Run(t.Context())

	wait := func(want bool) time.Duration {
		t.Helper()
		begin := time.Now()
		select {
		case <-flips:
		case <-time.After(5 * time.Second):
			t.Fatalf("no flip to healthy=%t within 5 s", want)
		}
		if got := h.Healthy("n2"); got != want {
			t.Fatalf("after a flip: healthy %t, want %t", got, want)
		}
		return time.Since(begin)
	}
	if !h.Healthy("n2") {
		t.Fatal("a node not checked yet counts unhealthy")
	}
	status.Store(http.StatusServiceUnavailable)
	t.Logf("down after %v (%d failed checks, one a %v)", wait(false).Round(time.Millisecond), unhealthyAfter, healthInterval)
	status.Store(http.StatusOK)
	t.Logf("up after %v", wait(true).Round(time.Millisecond))

	// A node that is no longer a target is forgotten.
	status.Store(http.StatusServiceUnavailable)
	wait(false)
	h.SetTargets(nil)
	if !h.Healthy("n2") {
		t.Error("a forgotten node still counts unhealthy")
	}
}
