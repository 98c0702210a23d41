package allocator

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// sharing is what decides whether a Service may share an IP with another.
type sharing struct {
	key      string
	ports    []Port
	local    bool
	selector string
}

func newSharing(req *Request) *sharing {
	if req.SharingKey == "" {
		return nil
	}
	return &sharing{key: req.SharingKey, ports: req.Ports, local: req.LocalTraffic, selector: req.Selector}
}

func (s *sharing) sharingKey() string {
	if s == nil {
		return ""
	}
	return s.key
}

// conflict says why a Service asking req may not share an IP with holder, or returns "".
func conflict(holder *sharing, req *sharing) string {
	switch {
	case req == nil && holder == nil:
		return "neither has a sharing key"
	case req == nil:
		return "the Service has no sharing key"
	case holder == nil:
		return "the holder has no sharing key"
	case holder.key != req.key:
		return fmt.Sprintf("their sharing keys differ (%q, %q)", holder.key, req.key)
	case holder.local != req.local:
		return "their externalTrafficPolicy differs"
	case holder.local && holder.selector != req.selector:
		return "with externalTrafficPolicy Local they must select the same pods"
	}
	for _, p := range req.ports {
		for _, q := range holder.ports {
			if p.Port == q.Port && protocol(p) == protocol(q) {
				return fmt.Sprintf("both use port %d/%s", p.Port, protocol(p))
			}
		}
	}
	return ""
}

func protocol(p Port) string { return cmp.Or(p.Protocol, "TCP") }

// canHold checks that a Service asking req may hold x in pool p alongside x's holders.
func (a *Allocator) canHold(x netip.Addr, p *pool, req *Request) *Error {
	first, ok := a.inUse[x]
	if !ok {
		return nil
	}
	var mine *sharing
	check := func(h *service) *Error {
		if h.key == req.Key {
			return nil
		}
		if h.pool != p {
			return &Error{Reason: IPInUse, Pool: p.cfg.Name, IP: x, Holder: h.key,
				Message: fmt.Sprintf("%s is held by Service %s from pool %q", x, h.key, h.pool.cfg.Name)}
		}
		if mine == nil {
			mine = newSharing(req)
		}
		if why := conflict(h.share, mine); why != "" {
			return &Error{Reason: IPInUse, Pool: p.cfg.Name, IP: x, Holder: h.key,
				Message: fmt.Sprintf("%s is held by Service %s and cannot be shared: %s", x, h.key, why)}
		}
		return nil
	}
	hs := a.sharers[x]
	if hs == nil {
		return check(first)
	}
	for _, h := range hs {
		if err := check(h); err != nil {
			return err
		}
	}
	return nil
}

// index records that x is in use under sharing key k, so that Services with the same key
// find it before taking a fresh address.
func (a *Allocator) index(k string, x netip.Addr) {
	if k != "" {
		a.sharing[k] = append(a.sharing[k], x)
	}
}

func (a *Allocator) unindex(k string, x netip.Addr) {
	if k == "" {
		return
	}
	xs := slices.DeleteFunc(a.sharing[k], func(y netip.Addr) bool { return y == x })
	if len(xs) == 0 {
		delete(a.sharing, k)
	} else {
		a.sharing[k] = xs
	}
}
