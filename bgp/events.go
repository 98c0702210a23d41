package bgp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"k8s.io/klog/v2"
)

// stableAfter is how long a session must stay up before its failure streak is forgotten;
// a session that dies younger counts as one more failure.
const stableAfter = time.Minute

// peerRecord is what GoBGP told about one peer address, through its state events and
// its log: GoBGP's API has neither the reason a session went down nor failed dials.
type peerRecord struct {
	state string
	since time.Time
	upAt  time.Time // when the session last came up
	flaps int
	// dialFailures counts failed dials since the session was last up; dialTimeouts the
	// consecutive ones among them that got no answer at all.
	dialFailures, dialTimeouts int
	// openFailures counts connections since the session was last up that GoBGP closed
	// with a NOTIFICATION before they were established (a bad OPEN, a wrong AS, no
	// answer within the hold time).
	openFailures int
	// youngDrops counts consecutive sessions that died before stableAfter.
	youngDrops int
	lastError  string
}

// failures is the failure streak that drives the reconnect backoff.
func (r peerRecord) failures() int { return r.dialFailures + r.openFailures + r.youngDrops }

// recorder keeps a peerRecord per address. GoBGP calls it from its own goroutines, so it
// only records and kicks; it never calls back into GoBGP.
type recorder struct {
	mu    sync.Mutex
	peers map[netip.Addr]*peerRecord
	now   func() time.Time
	kick  func()
}

func newRecorder(now func() time.Time, kick func()) *recorder {
	return &recorder{peers: map[netip.Addr]*peerRecord{}, now: now, kick: kick}
}

func (r *recorder) get(a netip.Addr) peerRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.peers[a]; p != nil {
		return *p
	}
	return peerRecord{}
}

// reset forgets a; a configured peer starts from nothing.
func (r *recorder) reset(a netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.peers, a)
}

func (r *recorder) recordLocked(a netip.Addr) *peerRecord {
	p := r.peers[a]
	if p == nil {
		p = &peerRecord{}
		r.peers[a] = p
	}
	return p
}

// stateChange records a session state event.
func (r *recorder) stateChange(a netip.Addr, state string, at time.Time) {
	r.mu.Lock()
	p := r.recordLocked(a)
	if p.state == state {
		r.mu.Unlock()
		return
	}
	switch {
	case state == StateEstablished:
		p.upAt = at
		p.dialFailures, p.dialTimeouts, p.openFailures = 0, 0, 0
	case p.state == StateEstablished:
		p.flaps++
		if at.Sub(p.upAt) < stableAfter {
			p.youngDrops++
		} else {
			p.youngDrops = 1
		}
	}
	p.state, p.since = state, at
	r.mu.Unlock()
	r.kick()
}

// stable forgets the drops of a session that has now been up stableAfter.
func (r *recorder) stable(a netip.Addr, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.peers[a]; p != nil && p.state == StateEstablished && now.Sub(p.upAt) >= stableAfter {
		p.youngDrops = 0
	}
}

// dialFailed records a failed dial.
func (r *recorder) dialFailed(a netip.Addr, err error) {
	r.mu.Lock()
	p := r.recordLocked(a)
	p.dialFailures++
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		p.dialTimeouts++
	} else {
		p.dialTimeouts = 0
	}
	p.lastError = "dial: " + errText(err)
	r.mu.Unlock()
	r.kick()
}

// openFailed records a connection GoBGP closed with the NOTIFICATION e before it was
// established. The TCP connection got through, so it was no TCP-MD5 mismatch.
func (r *recorder) openFailed(a netip.Addr, e *bgp.MessageError) {
	r.mu.Lock()
	p := r.recordLocked(a)
	p.openFailures++
	p.dialTimeouts = 0
	p.lastError = fmt.Sprintf("notification sent: %s: %s", bgp.NewNotificationErrorCode(e.TypeCode, e.SubTypeCode), e.Message)
	r.mu.Unlock()
	r.kick()
}

func (r *recorder) failed(a netip.Addr, what string) {
	r.mu.Lock()
	r.recordLocked(a).lastError = what
	r.mu.Unlock()
	r.kick()
}

func errText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// fromLog picks what the recorder needs out of one GoBGP log message. GoBGP logs failed
// dials ("failed to connect", debug level), NOTIFICATIONs it sends, session drops ("Peer
// Down" with a reason) and failed TCP-MD5 or TTL setup, with the peer's address as
// "Key". Its API has no NOTIFICATION before a session is established, and no log for one
// it receives then.
func (r *recorder) fromLog(msg string, fields gobgplog.Fields) {
	key, _ := fields["Key"].(string)
	a, err := netip.ParseAddr(key)
	if err != nil {
		return
	}
	a = a.Unmap()
	switch msg {
	case "failed to connect":
		e, _ := fields["Error"].(error)
		r.dialFailed(a, e)
	case "sent notification":
		// Before the session is established GoBGP logs the error it answers with as
		// Data; once established it logs code and subcode, and "Peer Down" follows
		// with the same reason.
		if e, ok := fields["Data"].(*bgp.MessageError); ok {
			r.openFailed(a, e)
		}
	case "Peer Down":
		if fields["Reason"] == "dying" {
			return // berth deleted the neighbour itself; its successor must not inherit this
		}
		r.failed(a, fmt.Sprintf("session down: %v", fields["Reason"]))
	case "failed to set md5", "cannot set TTL for peer", "cannot set MSS for peer":
		e := fields["Err"]
		if e == nil {
			e = fields["Error"]
		}
		r.failed(a, fmt.Sprintf("%s: %v", msg, e))
	}
}

// gobgpLogger bridges GoBGP's logger into klog and feeds the recorder. GoBGP guards its
// failed-dial message with GetLevel() >= Debug, so GetLevel always says Debug; what
// reaches klog is decided by V: errors always, warnings at V(1), GoBGP's info (peer up,
// down, configuration) at V(2), debug at V(5).
type gobgpLogger struct {
	log klog.Logger
	rec *recorder
}

var _ gobgplog.Logger = gobgpLogger{}

func (l gobgpLogger) Panic(msg string, f gobgplog.Fields) {
	l.log.Error(nil, msg, keyValues(f)...)
	panic(msg) // GoBGP's own logger panics too; it marks broken invariants
}
func (l gobgpLogger) Fatal(msg string, f gobgplog.Fields) { l.log.Error(nil, msg, keyValues(f)...) }
func (l gobgpLogger) Error(msg string, f gobgplog.Fields) {
	l.rec.fromLog(msg, f)
	l.log.Error(nil, msg, keyValues(f)...)
}
func (l gobgpLogger) Warn(msg string, f gobgplog.Fields)  { l.emit(1, msg, f) }
func (l gobgpLogger) Info(msg string, f gobgplog.Fields)  { l.emit(2, msg, f) }
func (l gobgpLogger) Debug(msg string, f gobgplog.Fields) { l.emit(5, msg, f) }
func (l gobgpLogger) SetLevel(gobgplog.LogLevel)          {}
func (l gobgpLogger) GetLevel() gobgplog.LogLevel         { return gobgplog.DebugLevel }

func (l gobgpLogger) emit(v int, msg string, f gobgplog.Fields) {
	l.rec.fromLog(msg, f)
	if lv := l.log.V(v); lv.Enabled() {
		lv.Info(msg, keyValues(f)...)
	}
}

// keyValues turns GoBGP's fields into sorted klog key/value pairs with lowerCamel keys
// ("Topic" → "topic"); GoBGP's "Key" (usually the peer address) becomes "key".
func keyValues(f gobgplog.Fields) []any {
	keys := make([]string, 0, len(f))
	for k := range f {
		if k == gobgplog.FieldFacility {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	kv := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		kv = append(kv, lowerFirst(k), f[k])
	}
	return kv
}

func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || unicode.IsLower(r) {
		return s
	}
	return strings.ToLower(s[:n]) + s[n:]
}
