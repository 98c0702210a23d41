package allocator

import (
	"fmt"
	"net/netip"
)

// Reason says why an allocation or a claim failed. Reasons are CamelCase and reused
// verbatim as Event reasons, condition reasons and metric label values.
//
// A Reason is also an error, so callers test for one with errors.Is(err, allocator.IPInUse),
// and get the details with errors.As(err, &e) where e is an *Error.
type Reason string

// Reasons the allocator reports.
const (
	// InvalidRequest: the Request contradicts itself (families, policy, requested IPs).
	InvalidRequest Reason = "InvalidRequest"
	// PoolNotFound: the Service names a pool that does not exist or is not accepted.
	PoolNotFound Reason = "PoolNotFound"
	// PoolNotAllowed: the pool the Service names, or the pool of its requested IP, does
	// not select the Service (serviceSelector, namespaceSelector).
	PoolNotAllowed Reason = "PoolNotAllowed"
	// NoPoolForService: no pool with autoAssign selects the Service.
	NoPoolForService Reason = "NoPoolForService"
	// RequestedIPNotInPool: a requested IP is in no accepted pool, not in the pool the
	// Service names, or is an address its pool avoids (.0/.255 with avoidBuggyIPs).
	RequestedIPNotInPool Reason = "RequestedIPNotInPool"
	// IPInUse: the IP is held by another Service it may not share with; Error.Holder
	// names that Service.
	IPInUse Reason = "IPInUse"
	// PoolExhausted: the pools the Service may use have addresses of the family, but none free.
	PoolExhausted Reason = "PoolExhausted"
	// FamilyUnavailable: no pool the Service may use has addresses of a family it needs.
	FamilyUnavailable Reason = "FamilyUnavailable"
	// StaleAssignment: an IP found in the Service's status no longer fits its spec or the
	// configuration, so Claim did not take it; the caller allocates again.
	StaleAssignment Reason = "StaleAssignment"
)

func (r Reason) Error() string { return string(r) }

// Error is what the allocator returns when it cannot do what was asked.
type Error struct {
	Reason Reason
	// Pool and IP are the pool and address concerned, when there is one.
	Pool string
	IP   netip.Addr
	// Holder is, for IPInUse, a Service that holds IP.
	Holder Key
	// Message says what is wrong in words a user can act on, naming the objects.
	Message string
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Message }

// Is makes errors.Is(err, reason) true for the error's Reason.
func (e *Error) Is(target error) bool {
	r, ok := target.(Reason)
	return ok && r == e.Reason
}

func fail(r Reason, pool string, ip netip.Addr, format string, args ...any) *Error {
	return &Error{Reason: r, Pool: pool, IP: ip, Message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) *Error {
	return fail(InvalidRequest, "", netip.Addr{}, format, args...)
}
