package l2

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Conflict is another machine claiming an IP this node answers for.
type Conflict struct {
	IP        netip.Addr
	Interface string
	MAC       net.HardwareAddr
	Seen      time.Time
}

// conflictLimiter lets one conflict per IP through per interval, so a device that
// keeps claiming an IP cannot flood the log or OnConflict.
type conflictLimiter struct {
	every time.Duration

	mu   sync.Mutex
	last map[netip.Addr]time.Time
}

// limiterPrune bounds the limiter's memory: past this many IPs, expired entries go.
const limiterPrune = 1024

func newConflictLimiter(every time.Duration) *conflictLimiter {
	return &conflictLimiter{every: every, last: map[netip.Addr]time.Time{}}
}

// allow reports whether a conflict for ip seen at now is reported, and if so starts the
// IP's quiet interval.
func (l *conflictLimiter) allow(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.last[ip]; ok && now.Sub(last) < l.every {
		return false
	}
	if len(l.last) >= limiterPrune {
		for k, t := range l.last {
			if now.Sub(t) >= l.every {
				delete(l.last, k)
			}
		}
	}
	l.last[ip] = now
	return true
}
