package allocator

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestErrors checks what callers rely on: errors.Is with a Reason, errors.As for the
// details, through wrapping, and a message that names the objects.
func TestErrors(t *testing.T) {
	a := newChecked(t, ipPool("p", "198.51.100.1/32"))
	mustAllocate(t, a, svc("holder"))
	_, err := a.Allocate(svc("s", requesting("198.51.100.1")))
	err = fmt.Errorf("ensure load balancer for default/s: %w", err)

	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *Error) = false", err)
	}
	type view struct {
		IsInUse, IsExhausted bool
		Holder               Key
		Message              string
	}
	got := view{errors.Is(err, IPInUse), errors.Is(err, PoolExhausted), e.Holder, err.Error()}
	want := view{
		IsInUse: true, Holder: Key{"default", "holder"},
		Message: "ensure load balancer for default/s: IPInUse: 198.51.100.1 is held by Service default/holder and cannot be shared: neither has a sharing key",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("error (-want +got):\n%s", d)
	}
}
