//go:build scale

package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/lab"
)

// churnConfig adds to the demo's configuration the BGP scenario's pool and the L2
// scenario's, so that churn exercises both announcers and every speaker's nftables.
const churnConfig = bgpConfig + "---\n" + l2Config

var l2ScalePool = netip.MustParsePrefix("2001:db8:18:2::2:0/112")

// BenchmarkChurn: on a site of 3 nodes with kube-proxy and the demo's peers, Services are
// created at up to 100 per second for 60 s (every other one IPv4 BGP, the others IPv6 L2,
// each with an EndpointSlice), and each is deleted 5 s after its creation: as many deletes
// as creates per second after the first 5 s. It reports the rate achieved, then, once
// every Service is gone, what is left after 60 s: addresses the pools still count as in
// use, FRR routes into the BGP pool, nftables elements of berth's table naming an
// address of either pool, and addresses of the L2 pool on the nodes' interfaces (all
// goal 0), and how long the cleanup took.
func BenchmarkChurn(b *testing.B) {
	const rate, lifetime = 100, 5 * time.Second
	duration := 60 * time.Second
	if d := servicesFromEnv(0); d > 0 {
		duration = time.Duration(d) * time.Second / rate // BERTH_SCALE_SERVICES: that many creates
	}
	w := newWorld(b, lab.SiteOptions{Nodes: 3}, true)
	w.apply(b, churnConfig)
	ctx := b.Context()
	const ns = "churn"
	w.namespace(b, ns)

	// A ticker offers a create 100 times a second to 16 workers; an offer no worker is
	// free for is dropped, so the API's pace shows as the rate achieved instead of as a
	// growing backlog. Each created Service is deleted 5 s later by another 16.
	type made struct {
		i  int
		at time.Time
	}
	var creates, deletes, failures, dropped atomic.Int64
	offers := make(chan int)
	toDelete := make(chan made, rate*int(duration/time.Second+1))
	var creators, deleters sync.WaitGroup
	for range 16 {
		creators.Go(func() {
			for i := range offers {
				var err error
				if i%2 == 0 {
					err = w.createService(ctx, ns, "scale", "", i, w.site.Nodes())
				} else {
					err = w.createL2Service(ctx, ns, i, w.site.Nodes())
				}
				if err != nil {
					failures.Add(1)
					b.Logf("churn: %v", err)
					continue
				}
				creates.Add(1)
				toDelete <- made{i, time.Now()}
			}
		})
		deleters.Go(func() {
			for m := range toDelete {
				select {
				case <-time.After(time.Until(m.at.Add(lifetime))):
				case <-ctx.Done():
					return
				}
				name := fmt.Sprintf("svc-%05d", m.i)
				err := w.kc.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
				if err == nil {
					err = w.kc.DiscoveryV1().EndpointSlices(ns).Delete(ctx, name+"-1", metav1.DeleteOptions{})
				}
				if err != nil {
					failures.Add(1)
					b.Logf("churn: delete %s: %v", name, err)
					continue
				}
				deletes.Add(1)
			}
		})
	}
	tick := time.NewTicker(time.Second / rate)
	begin := time.Now()
	for i := 0; time.Since(begin) < duration; i++ {
		<-tick.C
		select {
		case offers <- i:
		default:
			dropped.Add(1)
		}
	}
	tick.Stop()
	close(offers)
	creators.Wait()
	close(toDelete)
	deleters.Wait()
	elapsed := time.Since(begin)
	achieved := float64(creates.Load()) / duration.Seconds()
	b.Logf("churn: %d creates (%.1f/s over %v; target %d/s, %d offers dropped while every worker was busy) and %d deletes in %v, %d calls failed",
		creates.Load(), achieved, duration, rate, dropped.Load(), deletes.Load(), elapsed.Round(time.Millisecond), failures.Load())
	if failures.Load() > 0 {
		b.Errorf("%d API calls of the churn failed", failures.Load())
	}

	// Everything deleted: wait for the Services to go (berth's finalizer), then for what
	// berth made for them to go too, and report what is left.
	slowly(b, 3*time.Minute, "every churned Service is gone", func(ctx context.Context) (string, bool) {
		l, err := w.kc.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err.Error(), false
		}
		return fmt.Sprintf("%d left", len(l.Items)), len(l.Items) == 0
	})
	gone := time.Now()
	var left leftovers
	deadline := time.Now().Add(time.Minute)
	for {
		var err error
		if left, err = w.leftovers(ctx); err != nil {
			b.Fatal(err)
		}
		if left.zero() || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	cleanup := time.Since(gone)
	b.Logf("after the last Service went: %+v (%v later)", left, cleanup.Round(time.Millisecond))
	if !left.zero() {
		b.Errorf("berth leaked after the churn: %+v; examples: %s", left, strings.Join(left.examples, ", "))
	}

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(rate), "target-ops/s")
	b.ReportMetric(achieved, "achieved-ops/s")
	b.ReportMetric(float64(creates.Load()), "creates")
	b.ReportMetric(float64(deletes.Load()), "deletes")
	b.ReportMetric(float64(left.ips), "leaked-ips")
	b.ReportMetric(float64(left.routes), "leaked-routes")
	b.ReportMetric(float64(left.nft), "leaked-nft-elements")
	b.ReportMetric(float64(left.addrs), "leaked-node-addrs")
	b.ReportMetric(seconds(cleanup), "cleanup-s")
}

// leftovers is what berth still holds for Services that no longer exist.
type leftovers struct {
	ips, routes, nft, addrs int
	examples                []string
}

func (l leftovers) zero() bool { return l.ips+l.routes+l.nft+l.addrs == 0 }

// leftovers reads the pools' use (IPPool status), FRR's kernel routes into the BGP pool,
// berth's nftables table in every node, and the nodes' addresses.
func (w *world) leftovers(ctx context.Context) (leftovers, error) {
	var l leftovers
	for _, pool := range []string{"scale", "l2scale"} {
		raw, err := w.kc.Discovery().RESTClient().Get().AbsPath("/apis/berth.dev/v1alpha1/ippools/" + pool).DoRaw(ctx)
		if err != nil {
			return l, err
		}
		var p struct {
			Status struct {
				IPv4, IPv6 *struct {
					InUse string `json:"inUse"`
				}
			} `json:"status"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return l, fmt.Errorf("IPPool %s: %w", pool, err)
		}
		for _, f := range []*struct {
			InUse string `json:"inUse"`
		}{p.Status.IPv4, p.Status.IPv6} {
			if f == nil || f.InUse == "" || f.InUse == "0" {
				continue
			}
			n, err := strconv.Atoi(f.InUse)
			if err != nil {
				return l, fmt.Errorf("IPPool %s: inUse %q: %w", pool, f.InUse, err)
			}
			l.ips += n
			l.examples = append(l.examples, fmt.Sprintf("IPPool %s: %d in use", pool, n))
		}
	}
	routed, err := routedVia(ctx, w, bgpPool, -1)
	if err != nil {
		return l, err
	}
	l.routes = routed
	// count adds to n the words of out that name an address of either pool.
	count := func(node, what string, out []byte, n *int) {
		for _, f := range strings.Fields(string(out)) {
			f = strings.Trim(f, ",{}")
			if p, err := netip.ParsePrefix(f); err == nil { // an address with its prefix length
				f = p.Addr().String()
			}
			if a, err := netip.ParseAddr(f); err == nil && (bgpPool.Contains(a) || l2ScalePool.Contains(a)) {
				*n++
				if len(l.examples) < 10 {
					l.examples = append(l.examples, node+" "+what+" "+f)
				}
			}
		}
	}
	for _, nd := range w.site.Nodes() {
		out, err := nd.NS.Output(ctx, "nft", "list", "table", "inet", "berth")
		if err != nil {
			return l, fmt.Errorf("node %s: %w", nd.Name, err)
		}
		count(nd.Name, "nft", out, &l.nft)
		if out, err = nd.NS.IP(ctx, "-o", "addr", "show"); err != nil {
			return l, fmt.Errorf("node %s: %w", nd.Name, err)
		}
		count(nd.Name, "addr", out, &l.addrs)
	}
	return l, nil
}
