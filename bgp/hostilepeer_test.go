package bgp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// hostilePeer is a BGP speaker written by hand over raw TCP: it listens where a Server's
// peer is configured, completes the handshake on each connection the Server dials, and
// then writes whatever a test tells it to, well-formed or not. It records every message
// the Server sends it, so a test can assert the NOTIFICATION that ended a session.
type hostilePeer struct {
	addr  netip.Addr
	port  uint16
	asn   uint32
	conns chan net.Conn
}

// startHostilePeer listens on a free port of addr until the test ends.
func startHostilePeer(t *testing.T, addr netip.Addr, asn uint32) *hostilePeer {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	h := &hostilePeer{addr: addr, port: uint16(ln.Addr().(*net.TCPAddr).Port), asn: asn, conns: make(chan net.Conn, 8)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case h.conns <- c:
			default: // nobody will take it
				c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for {
			select {
			case c := <-h.conns:
				c.Close()
			default:
				return
			}
		}
	})
	return h
}

// hostileSession is one TCP connection the Server dialled to a hostilePeer.
type hostileSession struct {
	t    *testing.T
	conn net.Conn
	done chan struct{} // closed when the reader has seen the connection end

	wmu   sync.Mutex // serialises writes
	quiet bool       // no more KEEPALIVEs from the ticker

	mu      sync.Mutex
	msgs    []*bgp.BGPMessage // what the Server sent, in order
	readErr error             // why reading stopped
}

// accept takes the next connection the Server dials and starts reading it.
func (h *hostilePeer) accept(t *testing.T, timeout time.Duration) *hostileSession {
	t.Helper()
	var c net.Conn
	select {
	case c = <-h.conns:
	case <-time.After(timeout):
		t.Fatalf("hostile peer %s: no connection within %v", h.addr, timeout)
	}
	s := &hostileSession{t: t, conn: c, done: make(chan struct{})}
	go s.read()
	t.Cleanup(func() {
		s.conn.Close()
		<-s.done
	})
	return s
}

// read records every message until the connection ends. Messages that do not parse
// end the reading: the Server never sends one.
func (s *hostileSession) read() {
	defer close(s.done)
	for {
		hdr := make([]byte, bgp.BGP_HEADER_LENGTH)
		if _, err := io.ReadFull(s.conn, hdr); err != nil {
			s.stop(err)
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[16:18]))
		if n < bgp.BGP_HEADER_LENGTH || n > bgp.BGP_MAX_MESSAGE_LENGTH {
			s.stop(fmt.Errorf("message length %d from the server", n))
			return
		}
		buf := make([]byte, n)
		copy(buf, hdr)
		if _, err := io.ReadFull(s.conn, buf[bgp.BGP_HEADER_LENGTH:]); err != nil {
			s.stop(err)
			return
		}
		m, err := bgp.ParseBGPMessage(buf)
		if err != nil {
			s.stop(fmt.Errorf("message % x from the server: %w", buf, err))
			return
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
	}
}

func (s *hostileSession) stop(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readErr = err
}

// received returns the messages the Server sent so far and, once the connection has
// ended, why (nil while it is open).
func (s *hostileSession) received() ([]*bgp.BGPMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs), s.readErr
}

func (s *hostileSession) write(b []byte) {
	s.t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.conn.Write(b); err != nil {
		s.t.Fatalf("hostile peer: write: %v", err)
	}
}

// attack stops the KEEPALIVEs and writes b: nothing else follows it on the wire.
func (s *hostileSession) attack(b []byte) {
	s.t.Helper()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.quiet = true
	if _, err := s.conn.Write(b); err != nil {
		s.t.Fatalf("hostile peer: write: %v", err)
	}
}

// waitMessage waits for the first message the Server sent that ok accepts.
func (s *hostileSession) waitMessage(t *testing.T, timeout time.Duration, what string, ok func(*bgp.BGPMessage) bool) *bgp.BGPMessage {
	t.Helper()
	var got *bgp.BGPMessage
	waitFor(t, timeout, what, func() (string, bool) {
		msgs, err := s.received()
		for _, m := range msgs {
			if ok(m) {
				got = m
				return "", true
			}
		}
		return fmt.Sprintf("%d messages (%s), connection: %v", len(msgs), msgTypes(msgs), err), false
	})
	return got
}

// open completes the handshake as a speaker proposing holdTime (and padding its OPEN
// with pad zeros): it waits for the Server's OPEN, sends its own and a KEEPALIVE, waits
// for the Server's KEEPALIVE, and then sends a KEEPALIVE every second until attack.
func (s *hostileSession) open(t *testing.T, h *hostilePeer, holdTime uint16, pad int) {
	t.Helper()
	s.waitMessage(t, 10*time.Second, "OPEN from the server", isType(bgp.BGP_MSG_OPEN))
	s.write(h.openMessage(holdTime, pad))
	s.write(keepalive())
	s.waitMessage(t, 10*time.Second, "KEEPALIVE from the server", isType(bgp.BGP_MSG_KEEPALIVE))
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
			s.wmu.Lock()
			if !s.quiet {
				_, _ = s.conn.Write(keepalive())
			}
			s.wmu.Unlock()
		}
	}()
}

// notification returns the NOTIFICATION the Server sent, if any.
func (s *hostileSession) notification() (*bgp.BGPNotification, bool) {
	msgs, _ := s.received()
	for _, m := range msgs {
		if n, ok := m.Body.(*bgp.BGPNotification); ok {
			return n, true
		}
	}
	return nil, false
}

// advertised returns the prefixes the Server has announced on this session (and not
// withdrawn since).
func (s *hostileSession) advertised() []netip.Prefix {
	msgs, _ := s.received()
	have := map[netip.Prefix]bool{}
	for _, m := range msgs {
		u, ok := m.Body.(*bgp.BGPUpdate)
		if !ok {
			continue
		}
		for _, w := range u.WithdrawnRoutes {
			delete(have, prefixOf(w))
		}
		for _, n := range u.NLRI {
			have[prefixOf(n)] = true
		}
	}
	var out []netip.Prefix
	for p := range have {
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func prefixOf(p *bgp.IPAddrPrefix) netip.Prefix {
	a, _ := netip.AddrFromSlice(p.Prefix.To4())
	return netip.PrefixFrom(a, int(p.Length))
}

func isType(typ uint8) func(*bgp.BGPMessage) bool {
	return func(m *bgp.BGPMessage) bool { return m.Header.Type == typ }
}

func msgTypes(msgs []*bgp.BGPMessage) string {
	names := map[uint8]string{bgp.BGP_MSG_OPEN: "OPEN", bgp.BGP_MSG_UPDATE: "UPDATE", bgp.BGP_MSG_NOTIFICATION: "NOTIFICATION",
		bgp.BGP_MSG_KEEPALIVE: "KEEPALIVE", bgp.BGP_MSG_ROUTE_REFRESH: "ROUTE-REFRESH"}
	var out []string
	for _, m := range msgs {
		if n, ok := m.Body.(*bgp.BGPNotification); ok {
			out = append(out, fmt.Sprintf("NOTIFICATION %d/%d", n.ErrorCode, n.ErrorSubcode))
			continue
		}
		out = append(out, names[m.Header.Type])
	}
	// Runs of KEEPALIVEs say nothing.
	out = slices.Compact(out)
	return fmt.Sprint(out)
}

// openMessage is the peer's OPEN: BGP 4, its AS (AS_TRANS and the four-octet AS
// capability), holdTime, IPv4 unicast; pad bytes of zeros follow the optional
// parameters, with the header's length counting them.
func (h *hostilePeer) openMessage(holdTime uint16, pad int) []byte {
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC),
		bgp.NewCapRouteRefresh(),
		bgp.NewCapFourOctetASNumber(h.asn),
	}
	m := bgp.NewBGPOpenMessage(bgp.AS_TRANS, holdTime, h.addr.String(),
		[]bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	body, err := m.Body.Serialize()
	if err != nil {
		panic(err)
	}
	return message(bgp.BGP_MSG_OPEN, append(body, make([]byte, pad)...))
}

// message frames body with a correct header of type typ, whatever its length.
func message(typ uint8, body []byte) []byte {
	return frame(allOnes, bgp.BGP_HEADER_LENGTH+len(body), typ, body)
}

var allOnes = [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// frame builds a message from its header fields and body, as given.
func frame(marker [16]byte, length int, typ uint8, body []byte) []byte {
	b := make([]byte, bgp.BGP_HEADER_LENGTH, bgp.BGP_HEADER_LENGTH+len(body))
	copy(b, marker[:])
	binary.BigEndian.PutUint16(b[16:18], uint16(length))
	b[18] = typ
	return append(b, body...)
}

func keepalive() []byte { return message(bgp.BGP_MSG_KEEPALIVE, nil) }

// attr encodes one path attribute, with the extended length flag when value needs it.
func attr(flags bgp.BGPAttrFlag, typ bgp.BGPAttrType, value []byte) []byte {
	if len(value) > 255 {
		flags |= bgp.BGP_ATTR_FLAG_EXTENDED_LENGTH
	}
	if flags&bgp.BGP_ATTR_FLAG_EXTENDED_LENGTH != 0 {
		b := []byte{byte(flags), byte(typ), 0, 0}
		binary.BigEndian.PutUint16(b[2:], uint16(len(value)))
		return append(b, value...)
	}
	return append([]byte{byte(flags), byte(typ), byte(len(value))}, value...)
}

// Flags of the attributes the hostile peer sends.
const (
	wellKnown          = bgp.BGP_ATTR_FLAG_TRANSITIVE
	optionalTransitive = bgp.BGP_ATTR_FLAG_OPTIONAL | bgp.BGP_ATTR_FLAG_TRANSITIVE
	optional           = bgp.BGP_ATTR_FLAG_OPTIONAL
)

// baseAttrs are the mandatory attributes of a route from the peer: ORIGIN IGP, AS_PATH
// of its own AS, NEXT_HOP its address.
func (h *hostilePeer) baseAttrs() []byte {
	asPath := []byte{bgp.BGP_ASPATH_ATTR_TYPE_SEQ, 1, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(asPath[2:], h.asn)
	return slices.Concat(
		attr(wellKnown, bgp.BGP_ATTR_TYPE_ORIGIN, []byte{bgp.BGP_ORIGIN_ATTR_TYPE_IGP}),
		attr(wellKnown, bgp.BGP_ATTR_TYPE_AS_PATH, asPath),
		attr(wellKnown, bgp.BGP_ATTR_TYPE_NEXT_HOP, h.addr.AsSlice()),
	)
}

// updateBody is an UPDATE's body: no withdrawals, attrs (totalAttrLen says their
// length; -1: the real one), then the NLRI of prefixes.
func updateBody(attrs []byte, totalAttrLen int, prefixes ...netip.Prefix) []byte {
	if totalAttrLen < 0 {
		totalAttrLen = len(attrs)
	}
	b := []byte{0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(totalAttrLen))
	b = append(b, attrs...)
	for _, p := range prefixes {
		b = append(b, byte(p.Bits()))
		b = append(b, p.Addr().AsSlice()[:(p.Bits()+7)/8]...)
	}
	return b
}

// update is a well-formed UPDATE announcing prefixes with the base attributes and extra.
func (h *hostilePeer) update(extra []byte, prefixes ...netip.Prefix) []byte {
	return message(bgp.BGP_MSG_UPDATE, updateBody(slices.Concat(h.baseAttrs(), extra), -1, prefixes...))
}

// closedByServer says whether err is how reading ends when the Server closes the
// connection: a FIN, or a reset when it closed with our bytes unread.
func closedByServer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}
