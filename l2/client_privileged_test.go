//go:build privileged

package l2

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/berthlb/berth/lab/netns"
)

// run runs a program in the client namespace and returns its combined output.
func (s site) run(t *testing.T, prog string, args ...string) (string, error) {
	t.Helper()
	out, err := s.client.Command(t.Context(), prog, args...).CombinedOutput()
	return string(out), err
}

var (
	arpingMAC = regexp.MustCompile(`reply from \S+ \[([0-9A-Fa-f:]{17})\]`)
	ndiscMAC  = regexp.MustCompile(`(?m)^([0-9A-Fa-f:]{17})$`)
)

// arping asks for ip once from the client (iputils arping) and returns the MAC that
// answered, or "" when nobody did within wait.
func (s site) arping(t *testing.T, dev string, ip netip.Addr) string {
	t.Helper()
	out, err := s.run(t, "arping", "-c1", "-w1", "-I", dev, ip.String())
	m := arpingMAC.FindStringSubmatch(out)
	if err != nil || m == nil {
		return ""
	}
	return strings.ToLower(m[1])
}

// ndisc asks for ip once from the client (ndisc6) and returns the MAC that answered, or
// "" when nobody did within 500 ms.
func (s site) ndisc(t *testing.T, dev string, ip netip.Addr) string {
	t.Helper()
	out, err := s.run(t, "ndisc6", "-q", "-1", "-r1", "-w500", ip.String(), dev)
	m := ndiscMAC.FindStringSubmatch(out)
	if err != nil || m == nil {
		return ""
	}
	return strings.ToLower(m[1])
}

// inNetns runs fn on a thread inside ns; sockets fn opens stay in ns. It runs on a
// goroutine of its own: a thread that cannot go back stays locked and ends with it.
func inNetns(ns netns.NS, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := vnetns.GetFromPath(ns.Path())
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := vnetns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// sendARP sends an ARP reply from the client's dev claiming ip for sha, as a host that
// thinks it owns ip would answer the client.
func (s site) sendARP(t *testing.T, dev string, sha net.HardwareAddr, ip netip.Addr) {
	t.Helper()
	err := inNetns(s.client, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		pc, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
		if err != nil {
			return err
		}
		defer pc.Close()
		p, err := arp.NewPacket(arp.OperationReply, sha, ip, ethernet.Broadcast, ip)
		if err != nil {
			return err
		}
		pb, err := p.MarshalBinary()
		if err != nil {
			return err
		}
		fb, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: sha, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		if err != nil {
			return err
		}
		_, err = pc.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast})
		return err
	})
	if err != nil {
		t.Fatalf("send ARP reply for %s as %s from the client: %v", ip, sha, err)
	}
}

// askARP sends an ARP request for ip from the client's dev every interval until the
// returned function is called.
func (s site) askARP(t *testing.T, dev string, ip netip.Addr, every time.Duration) (stop func()) {
	t.Helper()
	var pc *packet.Conn
	err := inNetns(s.client, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		pc, err = packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := arp.NewPacket(arp.OperationRequest, clientMAC, clientV4.Addr(), ethernet.Broadcast, ip)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := p.MarshalBinary()
	fb, _ := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: clientMAC, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			_, _ = pc.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast})
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return sync.OnceFunc(func() {
		close(done)
		<-finished
		pc.Close()
	})
}

// sendNA sends an unsolicited neighbour advertisement from the client's dev claiming ip
// for tlla.
func (s site) sendNA(t *testing.T, dev string, tlla net.HardwareAddr, ip netip.Addr) {
	t.Helper()
	err := inNetns(s.client, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err != nil {
			return err
		}
		defer c.Close()
		na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: ip,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: tlla}}}
		return c.WriteTo(na, nil, allNodes)
	})
	if err != nil {
		t.Fatalf("send NA for %s as %s from the client: %v", ip, tlla, err)
	}
}

// neighEvent is one change of a neighbour entry the client's kernel reported.
type neighEvent struct {
	At    time.Time
	Type  uint16 // RTM_NEWNEIGH or RTM_DELNEIGH
	IP    netip.Addr
	MAC   string
	State int
}

func (e neighEvent) String() string {
	return fmt.Sprintf("%s %s %s %s", e.At.Format("15:04:05.000000"), e.IP, e.MAC, neighState(e.State))
}

func neighState(s int) string {
	names := []struct {
		bit  int
		name string
	}{{netlink.NUD_INCOMPLETE, "INCOMPLETE"}, {netlink.NUD_REACHABLE, "REACHABLE"}, {netlink.NUD_STALE, "STALE"},
		{netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"}, {netlink.NUD_FAILED, "FAILED"},
		{netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_PERMANENT, "PERMANENT"}}
	var out []string
	for _, n := range names {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return "NONE"
	}
	return strings.Join(out, "|")
}

// neighWatch records the client's neighbour events as the kernel sends them.
type neighWatch struct {
	mu     sync.Mutex
	events []neighEvent
	change chan struct{}
}

// watchNeigh subscribes to the client's neighbour changes until the test ends.
func (s site) watchNeigh(t *testing.T) *neighWatch {
	t.Helper()
	h, err := vnetns.GetFromPath(s.client.Path())
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan netlink.NeighUpdate, 256)
	done := make(chan struct{})
	if err := netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{Namespace: &h}); err != nil {
		h.Close()
		t.Fatal(err)
	}
	w := &neighWatch{change: make(chan struct{})}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for u := range ch {
			ip, _ := netip.AddrFromSlice(u.IP)
			e := neighEvent{At: time.Now(), Type: u.Type, IP: ip.Unmap(), MAC: u.HardwareAddr.String(), State: u.State}
			w.mu.Lock()
			w.events = append(w.events, e)
			close(w.change)
			w.change = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		close(done)
		<-finished
		h.Close()
	})
	return w
}

// waitFor returns the first event from index from on that matches, or fails after
// timeout.
func (w *neighWatch) waitFor(t *testing.T, timeout time.Duration, what string, match func(neighEvent) bool) neighEvent {
	t.Helper()
	deadline := time.After(timeout)
	next := 0
	for {
		w.mu.Lock()
		evs, change := w.events[next:], w.change
		next = len(w.events)
		w.mu.Unlock()
		for _, e := range evs {
			if match(e) {
				return e
			}
		}
		select {
		case <-change:
		case <-deadline:
			t.Fatalf("%s: not within %v; neighbour events: %v", what, timeout, w.all())
		}
	}
}

func (w *neighWatch) all() []neighEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]neighEvent(nil), w.events...)
}

// clientNeigh returns the client's neighbour entry for ip on dev.
func (s site) clientNeigh(t *testing.T, dev string, ip netip.Addr) (netlink.Neigh, bool) {
	t.Helper()
	h := s.clientHandle(t)
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := h.NeighList(l.Attrs().Index, fam)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if got, _ := netip.AddrFromSlice(n.IP); got.Unmap() == ip {
			return n, true
		}
	}
	return netlink.Neigh{}, false
}

// clientHandle is a netlink handle inside the client namespace.
func (s site) clientHandle(t *testing.T) *netlink.Handle {
	t.Helper()
	nsh, err := vnetns.GetFromPath(s.client.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// setClientNeigh makes the client believe ip is at mac (state STALE), as if an earlier
// owner had answered.
func (s site) setClientNeigh(t *testing.T, dev string, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	h := s.clientHandle(t)
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	n := &netlink.Neigh{LinkIndex: l.Attrs().Index, IP: ip.AsSlice(), HardwareAddr: mac, State: netlink.NUD_STALE}
	if err := h.NeighSet(n); err != nil {
		t.Fatalf("client neighbour %s at %s: %v", ip, mac, err)
	}
}

// flushClientNeigh removes the client's entry for ip, if any.
func (s site) flushClientNeigh(t *testing.T, dev string, ip netip.Addr) {
	t.Helper()
	if n, ok := s.clientNeigh(t, dev, ip); ok {
		h := s.clientHandle(t)
		defer h.Close()
		if err := h.NeighDel(&n); err != nil {
			t.Fatalf("flush client neighbour %s: %v", ip, err)
		}
	}
}
