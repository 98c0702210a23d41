package inspect

import (
	"math/big"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/config/v1alpha1"
)

// PoolStatus is one IPPool's use, per family, as berth-controller reports it in the
// pool's status.
type PoolStatus struct {
	Name string `json:"name"`
	Mode string `json:"mode"`
	// IPv4 and IPv6 are nil when the pool has no address of that family.
	IPv4 *FamilyUse `json:"ipv4,omitempty"`
	IPv6 *FamilyUse `json:"ipv6,omitempty"`
	// Accepted is false when the configuration left the pool out; Problem says why.
	Accepted bool   `json:"accepted"`
	Problem  string `json:"problem,omitempty"`
}

// FamilyUse counts a pool's addresses of one family (decimal strings: an IPv6 pool may
// hold 2^64).
type FamilyUse struct {
	InUse    string `json:"inUse"`
	Capacity string `json:"capacity"`
	// Percent used, rounded down; 100 means exhausted.
	Percent int `json:"percent"`
}

// Pools describes every pool, sorted by name.
func Pools(pools []v1alpha1.IPPool) []PoolStatus {
	out := make([]PoolStatus, 0, len(pools))
	for _, p := range pools {
		s := PoolStatus{Name: p.Name, Mode: string(p.Spec.IPMode)}
		if s.Mode == "" {
			s.Mode = string(v1alpha1.IPModeVIP)
		}
		s.IPv4, s.IPv6 = familyUse(p.Status.IPv4), familyUse(p.Status.IPv6)
		if c := meta.FindStatusCondition(p.Status.Conditions, "Accepted"); c != nil {
			s.Accepted = c.Status == metav1.ConditionTrue
			if !s.Accepted {
				s.Problem = c.Reason + ": " + c.Message
			}
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b PoolStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func familyUse(f *v1alpha1.FamilyUsage) *FamilyUse {
	if f == nil {
		return nil
	}
	u := &FamilyUse{InUse: f.InUse, Capacity: f.Capacity}
	used, ok1 := new(big.Int).SetString(f.InUse, 10)
	capacity, ok2 := new(big.Int).SetString(f.Capacity, 10)
	if ok1 && ok2 && capacity.Sign() > 0 {
		pct := new(big.Int).Mul(used, big.NewInt(100))
		u.Percent = int(pct.Div(pct, capacity).Int64())
	}
	return u
}
