// Package capture records the Ethernet frames on one device inside a lab namespace with an
// AF_PACKET socket, so a test can assert what went over the wire (a gratuitous ARP, an
// unsolicited neighbour advertisement) without tcpdump.
package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthlb/berth/lab/netns"
)

// MaxFrames bounds what a Capture keeps; later frames are counted as dropped.
const MaxFrames = 1 << 16

// Capture records the frames of one device until closed.
type Capture struct {
	ns  netns.NS
	dev string
	f   *os.File

	mu      sync.Mutex
	frames  []Frame
	dropped int
	changed chan struct{} // closed and replaced whenever a frame arrives or reading ends
	err     error         // why reading ended
	done    chan struct{}
}

// Start opens a capture on dev inside ns and records frames in both directions until
// Close. Every frame sent or received after Start returns is seen.
func Start(ctx context.Context, ns netns.NS, dev string) (*Capture, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, ifindex, err := openIn(ns, dev)
	if err != nil {
		return nil, fmt.Errorf("capture %s in %s: %w", dev, ns, err)
	}
	c := &Capture{
		ns:      ns,
		dev:     dev,
		f:       os.NewFile(uintptr(fd), "capture:"+dev), // non-blocking, so Close wakes the reader
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go c.read(ifindex)
	return c, nil
}

// openIn opens a packet socket bound to dev inside ns. Only this locked thread enters the
// namespace; a socket keeps the namespace it was made in, so the thread goes back at once.
func openIn(ns netns.NS, dev string) (fd, ifindex int, err error) {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, 0, err
	}
	defer unix.Close(orig)
	target, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, 0, err
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return -1, 0, fmt.Errorf("setns: %w", err)
	}
	defer func() {
		// A thread that cannot go back stays locked, so the runtime ends it with this
		// goroutine instead of reusing it in the wrong namespace.
		if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr == nil {
			runtime.UnlockOSThread()
		} else if err == nil {
			unix.Close(fd)
			fd, err = -1, fmt.Errorf("setns back: %w", rerr)
		}
	}()
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return -1, 0, err
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, 0, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bind packet socket: %w", err)
	}
	return fd, ifi.Index, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) read(ifindex int) {
	defer close(c.done)
	rc, err := c.f.SyscallConn()
	if err != nil {
		c.finish(err)
		return
	}
	buf := make([]byte, 65536)
	for {
		var (
			n    int
			from unix.Sockaddr
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			c.finish(err)
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Ifindex != ifindex { // frames of other devices before bind took effect
			continue
		}
		c.add(Frame{Time: time.Now(), Outgoing: ll.Pkttype == unix.PACKET_OUTGOING, Data: append([]byte(nil), buf[:n]...)})
	}
}

func (c *Capture) add(f Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.frames) >= MaxFrames {
		c.dropped++
		return
	}
	c.frames = append(c.frames, f)
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Capture) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(err, os.ErrClosed) {
		err = ErrClosed
	}
	c.err = err
	close(c.changed)
	c.changed = make(chan struct{})
}

// ErrClosed means the capture was closed.
var ErrClosed = errors.New("capture closed")

// Frames returns the frames recorded so far, oldest first.
func (c *Capture) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// Dropped is how many frames arrived after MaxFrames were kept.
func (c *Capture) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// WaitFor returns the first recorded frame, past or future, for which match is true. On
// timeout the error says how many frames were seen.
func (c *Capture) WaitFor(ctx context.Context, match func(Frame) bool) (Frame, error) {
	next := 0
	for {
		c.mu.Lock()
		frames, changed, err := c.frames[next:], c.changed, c.err
		next = len(c.frames)
		c.mu.Unlock()
		for _, f := range frames {
			if match(f) {
				return f, nil
			}
		}
		if err != nil {
			return Frame{}, fmt.Errorf("capture %s in %s: no matching frame among %d: %w", c.dev, c.ns, next, err)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Frame{}, fmt.Errorf("capture %s in %s: no matching frame among %d: %w", c.dev, c.ns, next, ctx.Err())
		}
	}
}

// Close stops the capture and waits for its reader to end. The frames stay readable.
func (c *Capture) Close() error {
	err := c.f.Close()
	<-c.done
	if err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("capture %s in %s: %w", c.dev, c.ns, err)
	}
	return nil
}

// Send writes one whole Ethernet frame to the device, as a test's forged sender.
func (c *Capture) Send(frame []byte) error {
	if _, err := c.f.Write(frame); err != nil {
		return fmt.Errorf("send on %s in %s: %w", c.dev, c.ns, err)
	}
	return nil
}
