package lab

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Eventually polls cond every 20 ms until it holds and returns how long that took, or
// fails the test with what cond last reported. cond reports what it saw, for the failure.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func(context.Context) (seen string, ok bool)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		seen, ok := cond(ctx)
		if ctx.Err() == nil { // the last call may only have seen the deadline
			last = seen
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %v (%v); last: %s", what, timeout, err, last)
	}
	return time.Since(start)
}
