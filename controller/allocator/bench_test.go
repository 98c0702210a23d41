package allocator

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/berthlb/berth/config"
	"github.com/berthlb/berth/config/v1alpha1"
)

// benchPools are the pools the benchmarks fill: an IPv4 /12 (about a million addresses)
// and an IPv6 /64, which no allocator may enumerate.
var benchPools = []struct {
	name   string
	pool   v1alpha1.IPPool
	family config.Family
}{
	{"ipv4-slash12", ipPool("p", "100.64.0.0/12"), config.IPv4},
	{"ipv6-slash64", ipPool("p", "2001:db8:113::/64"), config.IPv6},
}

func benchRequests(prefix string, n int, f config.Family) []Request {
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = svc(fmt.Sprintf("%s%d", prefix, i), only(f), created(i))
	}
	return reqs
}

// BenchmarkAllocate measures one allocation in a pool that already holds 0, 10,000 or
// 100,000 addresses: the cost must not depend on it.
func BenchmarkAllocate(b *testing.B) {
	for _, bp := range benchPools {
		for _, used := range []int{0, 10_000, 100_000} {
			b.Run(fmt.Sprintf("%s/used=%d", bp.name, used), func(b *testing.B) {
				a := New(snapshot(b, bp.pool))
				for _, r := range benchRequests("used-", used, bp.family) {
					if _, err := a.Allocate(r); err != nil {
						b.Fatal(err)
					}
				}
				// Allocate a batch, then release it untimed, so that the pool stays at
				// about `used` and the releases go through the queue as in real life.
				batch := benchRequests("new-", 1024, bp.family)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := a.Allocate(batch[i]); err != nil {
						b.Fatal(err)
					}
					if i++; i == len(batch) {
						b.StopTimer()
						for _, r := range batch {
							a.Release(r.Key)
						}
						i = 0
						b.StartTimer()
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/alloc")
			})
		}
	}
}

// BenchmarkFill100k allocates 100,000 addresses into an empty pool and compares the cost
// of the first thousand allocations with that of the last thousand.
func BenchmarkFill100k(b *testing.B) {
	const n = 100_000
	for _, bp := range benchPools {
		b.Run(bp.name, func(b *testing.B) {
			snap := snapshot(b, bp.pool)
			reqs := benchRequests("s", n, bp.family)
			var first, last time.Duration
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			for b.Loop() {
				a := New(snap)
				for i, r := range reqs {
					var start time.Time
					timed := i < 1000 || i >= n-1000
					if timed {
						start = time.Now()
					}
					if _, err := a.Allocate(r); err != nil {
						b.Fatal(err)
					}
					if timed {
						if d := time.Since(start); i < 1000 {
							first += d
						} else {
							last += d
						}
					}
				}
			}
			runtime.ReadMemStats(&ms1)
			allocs := float64(b.N) * n
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/allocs, "ns/alloc")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/allocs, "B/alloc")
			b.ReportMetric(float64(first.Nanoseconds())/float64(b.N*1000), "ns/alloc-first-1k")
			b.ReportMetric(float64(last.Nanoseconds())/float64(b.N*1000), "ns/alloc-last-1k")
		})
	}
}

// BenchmarkClaim100k restores 100,000 assignments after a restart, the Services found in
// an order unrelated to their addresses, then times (apart) the first thousand
// allocations after it.
func BenchmarkClaim100k(b *testing.B) {
	const n = 100_000
	for _, bp := range benchPools {
		b.Run(bp.name, func(b *testing.B) {
			snap := snapshot(b, bp.pool)
			a := New(snap)
			reqs := benchRequests("s", n, bp.family)
			existing := make([]Existing, n)
			for i, r := range reqs {
				asg, err := a.Allocate(r)
				if err != nil {
					b.Fatal(err)
				}
				existing[i] = Existing{Request: r, IPs: asg.IPs}
			}
			// Ages unrelated to addresses: claims come in random address order.
			rng := rand.New(rand.NewPCG(1, 2))
			rng.Shuffle(n, func(i, j int) {
				existing[i].Request.Created, existing[j].Request.Created = existing[j].Request.Created, existing[i].Request.Created
			})
			after := benchRequests("after-", 1000, bp.family)
			var afterRestore time.Duration
			b.ReportAllocs()
			for b.Loop() {
				a := New(snap)
				if errs := a.ClaimAll(existing); len(errs) > 0 {
					b.Fatalf("%d claims refused", len(errs))
				}
				b.StopTimer()
				start := time.Now()
				for _, r := range after {
					if _, err := a.Allocate(r); err != nil {
						b.Fatal(err)
					}
				}
				afterRestore += time.Since(start)
				b.StartTimer()
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/restore")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/claim")
			b.ReportMetric(float64(afterRestore.Nanoseconds())/float64(b.N*len(after)), "ns/alloc-after-restore")
		})
	}
}
