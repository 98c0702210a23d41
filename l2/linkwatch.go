package l2

import (
	"context"
	"time"

	"github.com/vishvananda/netlink"
)

// resubscribeDelay is how long the watcher waits before subscribing again after the
// kernel ended a subscription (a receive buffer overrun, say). Each reconcile rereads
// every link, so a lost event costs nothing but the delay.
const resubscribeDelay = time.Second

// watchLinks turns link changes (up, down, carrier, new, deleted, renamed, enslaved) into
// kicks of the loop, until ctx ends. The events only say "look again": the loop reads the
// whole link list each time, so it never acts on a stale or partial event.
func (a *Announcer) watchLinks(ctx context.Context) {
	for {
		ch := make(chan netlink.LinkUpdate, 64)
		done := make(chan struct{})
		err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
			ErrorCallback: func(err error) {
				if ctx.Err() == nil {
					a.log.V(2).Info("Link subscription", "err", err)
				}
			},
		})
		if err != nil {
			a.log.Error(err, "Cannot subscribe to link changes; retrying")
		} else {
			a.kickNow() // whatever changed before the subscription started
			if a.forward(ctx, ch, done) {
				return
			}
			a.log.V(2).Info("Link subscription ended; subscribing again")
		}
		t := time.NewTimer(resubscribeDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// forward kicks the loop for each update until the subscription ends (false) or ctx
// does (true). netlink's reader blocks on sending to ch, so ch is drained until it is
// closed before returning.
func (a *Announcer) forward(ctx context.Context, ch <-chan netlink.LinkUpdate, done chan struct{}) bool {
	for {
		select {
		case <-ctx.Done():
			close(done)
			for range ch {
			}
			return true
		case _, ok := <-ch:
			if !ok {
				close(done)
				return false
			}
			a.kickNow()
		}
	}
}
