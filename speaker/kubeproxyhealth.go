package speaker

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Health checks of other nodes' kube-proxy, as a cloud load balancer checks them before
// sending a node NodePort traffic: GET http://<InternalIP>:<port>/healthz.
const (
	// DefaultKubeProxyHealthzPort is kube-proxy's --healthz-bind-address port.
	DefaultKubeProxyHealthzPort = 10256
	healthInterval              = time.Second
	healthTimeout               = time.Second
	// unhealthyAfter consecutive failed checks take a node out; one success brings it back.
	unhealthyAfter = 2
)

// kubeProxyHealth checks the kube-proxy of the nodes it is given and says which answer.
// A node not checked yet counts as healthy.
type kubeProxyHealth struct {
	port    int
	client  *http.Client
	changed func()

	mu       sync.Mutex
	targets  map[string]netip.Addr
	failures map[string]int
}

func newKubeProxyHealth(port int, changed func()) *kubeProxyHealth {
	return &kubeProxyHealth{
		port: port, changed: changed,
		client:   &http.Client{Timeout: healthTimeout, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}},
		failures: map[string]int{},
	}
}

// Healthy says whether node's kube-proxy answers.
func (h *kubeProxyHealth) Healthy(node string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failures[node] < unhealthyAfter
}

// SetTargets sets the nodes to check; nil stops checking. A node that leaves the targets
// is forgotten.
func (h *kubeProxyHealth) SetTargets(nodes []ProxyNode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.targets = map[string]netip.Addr{}
	for _, n := range nodes {
		if len(n.Addrs) > 0 {
			h.targets[n.Name] = n.Addrs[0]
		}
	}
	for name := range h.failures {
		if _, ok := h.targets[name]; !ok {
			delete(h.failures, name)
		}
	}
}

// Run checks every target each healthInterval until ctx ends, and calls changed when a
// node's health flips.
func (h *kubeProxyHealth) Run(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		targets := make(map[string]netip.Addr, len(h.targets))
		for n, a := range h.targets {
			targets[n] = a
		}
		h.mu.Unlock()
		results := make(map[string]error, len(targets))
		var wg sync.WaitGroup
		var rmu sync.Mutex
		for name, addr := range targets {
			wg.Go(func() {
				err := h.check(ctx, addr)
				rmu.Lock()
				results[name] = err
				rmu.Unlock()
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		flipped := false
		h.mu.Lock()
		for name, err := range results {
			if _, ok := h.targets[name]; !ok {
				continue
			}
			was := h.failures[name] < unhealthyAfter
			if err == nil {
				h.failures[name] = 0
			} else {
				h.failures[name]++
			}
			flipped = flipped || was != (h.failures[name] < unhealthyAfter)
		}
		h.mu.Unlock()
		if flipped {
			h.changed()
		}
	}
}

func (h *kubeProxyHealth) check(ctx context.Context, addr netip.Addr) error {
	url := "http://" + netip.AddrPortFrom(addr, uint16(h.port)).String() + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, strconv.Itoa(resp.StatusCode))
	}
	return nil
}
