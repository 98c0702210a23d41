package lab

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Eventually polls cond every 20 ms until it holds and returns how long that took, or
// fails the test with what cond last reported. cond reports what it saw, for the failure.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func(context.Context) (seen string, ok bool)) time.Duration {
	t.Helper()
	took, err := Poll(t.Context(), 20*time.Millisecond, timeout, what, cond)
	if err != nil {
		t.Fatal(err)
	}
	return took
}

// Poll calls cond every interval until it holds and returns how long that took; after
// timeout, an error that says what cond last reported. For a caller that goes on after a
// miss (a benchmark round that counts it); a test wants Eventually.
func Poll(ctx context.Context, interval, timeout time.Duration, what string, cond func(context.Context) (seen string, ok bool)) (time.Duration, error) {
	start := time.Now()
	var last string
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(ctx context.Context) (bool, error) {
		seen, ok := cond(ctx)
		if ctx.Err() == nil { // the last call may only have seen the deadline
			last = seen
		}
		return ok, nil
	})
	if err != nil {
		return 0, fmt.Errorf("%s: not within %v (%v); last: %s", what, timeout, err, last)
	}
	return time.Since(start), nil
}
