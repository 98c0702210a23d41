package l2

import (
	"bytes"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// loop is the state only Run's goroutine touches: the open links, the scheduled
// repeats, and lo's index.
type loop struct {
	a      *Announcer
	lo     int
	links  map[string]*link
	bursts burstQueue
	known  []linkInfo // the last link list read
	// closing tracks sockets being closed in the background: closing a packet socket
	// waits for an RCU grace period (packet_release → synchronize_net), 10–25 ms measured
	// here, which would hold up everything else the loop has to do. The sockets no longer
	// answer by then: their owned set is already empty.
	closing sync.WaitGroup
}

// closeLater closes a socket in the background.
func (st *loop) closeLater(close func()) { st.closing.Go(close) }

// reconcile makes the answered set match the plan for the current links, changing only
// the difference. Order matters: what is dropped stops being answered first; an IPv6 IP
// goes on lo before it is answered (so the unicast NS re-validating it reaches us and the
// advertisement can come from it) and leaves lo after.
func (st *loop) reconcile() {
	a := st.a
	links, err := listLinks()
	switch {
	case err == nil:
		st.known = links
	case st.known != nil:
		// Still apply the desired set (dropping an IP must not wait for netlink) over the
		// links as last seen, and look again soon.
		a.log.Error(err, "Cannot read links; using the last list")
		links = st.known
		a.h.retry()
	default:
		a.log.Error(err, "Cannot read links")
		a.h.retry()
		return
	}
	a.h.setLocal(links)
	next := plan(a.wanted(), links)
	byName := make(map[string]linkInfo, len(links))
	for _, l := range links {
		byName[l.Name] = l
	}

	// Links that are gone, changed, broken or have nothing left to answer.
	for name, l := range st.links {
		info, ok := byName[name]
		if _, wanted := next[name]; wanted && ok && info.Index == l.index && bytes.Equal(info.MAC, l.mac) && !l.broken.Load() {
			continue
		}
		st.close(l)
	}
	// Stop answering what is no longer wanted where the link stays.
	for name, l := range st.links {
		cur := l.owned()
		keep := ipSet{}
		for ip := range cur {
			if next[name].has(ip) {
				keep[ip] = struct{}{}
			}
		}
		if len(keep) != len(cur) {
			l.publish(keep)
			st.dropped(name, cur, keep)
		}
	}

	st.syncLo(union(next).only(false), false)

	for _, name := range slices.Sorted(maps.Keys(next)) {
		l := st.links[name]
		if l == nil {
			if l, err = newLink(byName[name]); err != nil {
				a.log.Error(err, "Cannot answer on interface", "interface", name)
				continue
			}
			st.links[name] = l
		}
		st.answer(l, next[name])
	}

	st.syncLo(st.answered().only(false), true)
	st.publish()
}

// answer opens what l needs to answer for ips, publishes what it can answer for,
// announces the IPs new there and closes what is no longer needed.
func (st *loop) answer(l *link, ips ipSet) {
	a := st.a
	cur := l.owned()
	got := ipSet{}
	if v4 := ips.only(true); len(v4) > 0 {
		if l.arp == nil {
			c, err := openARP(l, a.h)
			if err != nil {
				a.log.Error(err, "Cannot answer ARP", "interface", l.name)
			}
			l.arp = c
		}
		if l.arp != nil {
			maps.Copy(got, v4)
		}
	}
	if v6 := ips.only(false); len(v6) > 0 {
		if l.ndp == nil {
			c, err := openNDP(l, a.h)
			if err != nil {
				a.log.Error(err, "Cannot answer NDP", "interface", l.name)
			}
			l.ndp = c
		}
		if l.ndp != nil {
			// Join before answering; the groups of dropped IPs are left below.
			joinFor := cur.only(false)
			maps.Copy(joinFor, v6)
			if err := l.ndp.syncGroups(joinFor); err != nil {
				a.log.Error(err, "Cannot join solicited-node groups; unicast solicitations are still answered", "interface", l.name)
			}
			maps.Copy(got, v6)
		}
	}
	l.publish(got)

	added, _ := diff(map[string]ipSet{l.name: cur}, map[string]ipSet{l.name: got})
	now := time.Now()
	for _, p := range added {
		a.log.V(2).Info("Answering", "ip", p.IP, "interface", p.Interface)
		a.h.metrics.takeovers.WithLabelValues(family(p.IP)).Inc()
		st.announce(l, p.IP)
		st.bursts.add(p, a.cfg.Burst, now.Add(a.cfg.BurstInterval))
	}

	if len(got.only(true)) == 0 && l.arp != nil {
		st.closeLater(l.arp.close)
		l.arp = nil
	}
	if l.ndp != nil {
		if v6 := got.only(false); len(v6) == 0 {
			st.closeLater(l.ndp.close)
			l.ndp = nil
		} else if err := l.ndp.syncGroups(v6); err != nil {
			a.log.Error(err, "Cannot leave solicited-node groups", "interface", l.name)
		}
	}
}

// announce sends one gratuitous ARP (both forms) or unsolicited NA for ip on l.
func (st *loop) announce(l *link, ip netip.Addr) {
	if st.a.h.silent() {
		return
	}
	var err error
	switch {
	case ip.Is4() && l.arp != nil:
		err = l.arp.announce(ip)
	case ip.Is6() && l.ndp != nil:
		err = l.ndp.announce(ip)
	default:
		return
	}
	if err != nil {
		st.a.log.Error(err, "Cannot announce", "ip", ip, "interface", l.name)
		return
	}
	st.a.h.metrics.gratuitous.WithLabelValues(family(ip)).Inc()
}

// reannounce announces every answered IP again, with its burst, as at a takeover.
func (st *loop) reannounce() {
	now := time.Now()
	n := 0
	for _, l := range st.links {
		for ip := range l.owned() {
			st.announce(l, ip)
			st.bursts.add(pair{Interface: l.name, IP: ip}, st.a.cfg.Burst, now.Add(st.a.cfg.BurstInterval))
			n++
		}
	}
	st.a.log.V(2).Info("Announced again", "pairs", n)
}

// repeat sends the announcements of the bursts that are due.
func (st *loop) repeat() {
	for _, p := range st.bursts.due(time.Now(), st.a.cfg.BurstInterval) {
		if l := st.links[p.Interface]; l != nil && l.owned().has(p.IP) {
			st.announce(l, p.IP)
		}
	}
}

// arm sets t to fire when the next repeat is due.
func (st *loop) arm(t *time.Timer) {
	if next, ok := st.bursts.next(); ok {
		t.Reset(max(time.Until(next), 0))
		return
	}
	t.Stop()
}

// close stops answering on l and closes it.
func (st *loop) close(l *link) {
	cur := l.owned()
	l.closeConns(st.closeLater)
	st.dropped(l.name, cur, nil)
	delete(st.links, l.name)
}

// dropped logs and unschedules the IPs of before that are not in after.
func (st *loop) dropped(name string, before, after ipSet) {
	for _, ip := range before.sorted() {
		if !after.has(ip) {
			st.a.log.V(2).Info("Stopped answering", "ip", ip, "interface", name)
			st.bursts.drop(pair{name, ip})
		}
	}
}

// answered is every IP answered on some link.
func (st *loop) answered() ipSet {
	by := make(map[string]ipSet, len(st.links))
	for name, l := range st.links {
		by[name] = l.owned()
	}
	return union(by)
}

// syncLo adds the IPv6 IPs of want missing from lo and, if prune, deletes the marked
// addresses want does not hold.
func (st *loop) syncLo(want ipSet, prune bool) {
	present, err := listAddrs(st.lo)
	if err != nil {
		st.a.log.Error(err, "Cannot read the addresses on lo")
		return
	}
	add, del := loPlan(present, want)
	for _, ip := range add {
		if err := addMarked(st.lo, ip); err != nil {
			st.a.log.Error(err, "Cannot put LB IP on lo; unicast re-validation will fail", "ip", ip)
			continue
		}
		st.a.log.V(2).Info("Put LB IP on lo", "ip", ip)
	}
	if !prune {
		return
	}
	for _, p := range del {
		if err := delAddr(st.lo, p); err != nil {
			st.a.log.Error(err, "Cannot remove marked address from lo", "address", p)
			continue
		}
		st.a.log.V(2).Info("Removed marked address from lo", "address", p)
	}
}

// publish makes the answered set visible to Owned and the metrics.
func (st *loop) publish() {
	by := make(map[string]ipSet, len(st.links))
	for name, l := range st.links {
		if s := l.owned(); len(s) > 0 {
			by[name] = s
		}
	}
	owned := group(by)
	st.a.mu.Lock()
	st.a.owned = owned
	st.a.mu.Unlock()
	st.a.h.metrics.setOwned(union(by))
}

// teardown stops answering everywhere, closes every socket and removes every marked
// address from lo.
func (st *loop) teardown() {
	for _, l := range st.links {
		st.close(l)
	}
	st.bursts = burstQueue{}
	st.syncLo(ipSet{}, true)
	st.publish()
	st.closing.Wait()
}
