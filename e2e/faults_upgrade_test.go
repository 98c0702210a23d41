//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/lab"
	"github.com/berthlb/berth/speaker"
)

// TestFaultRollingUpgrade: one node's speaker is replaced by one of the "next release"
// (it implements and publishes decision version 2, whose owners differ from version 1's).
// Old and new side by side, every speaker elects with the lowest version present, 1, so
// all agree on every L2 owner, the same as before the upgrade.
func TestFaultRollingUpgrade(t *testing.T) {
	ns := namespace(t)
	deployment(t, ns, "web", 3)
	waitPods(t, ns, "web", 3)
	var ips []netip.Addr
	for i := range 8 {
		name := fmt.Sprintf("l2-%d", i)
		lbService(t, ns, name, "web", nil)
		ips = append(ips, ingress(t, ns, name, 1)[0])
	}
	bin, err := lab.BuildRehearsalSpeaker(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	before := agreedOwners(t, ns, len(ips), 1)
	// Had a version-2 speaker elected alone, it would disagree with the others here.
	differ := 0
	for _, ip := range ips {
		if owner, _ := speaker.Elect(2, ip, env.nodes); owner != before[ip] {
			differ++
		}
	}
	if differ == 0 {
		t.Fatalf("versions 1 and 2 elect alike for all of %v: the test would show nothing", ips)
	}

	node := env.nodes[len(env.nodes)-1]
	// An address the upgraded node answers for: a speaker stopping for the upgrade keeps
	// answering until it has left memberlist and the others took over.
	var watched netip.Addr
	for ip, owner := range before {
		if owner == node {
			watched = ip
		}
	}
	if !watched.IsValid() {
		t.Fatalf("%s owns none of %v", node, before)
	}
	w := watchARP(t, watched)
	env.berth.SetSpeakerBinary(node, bin)
	t.Cleanup(func() {
		env.berth.SetSpeakerBinary(node, "")
		stopSpeaker(t, node, syscall.SIGTERM)
		startSpeaker(t, node)
	})
	start := time.Now()
	stopSpeaker(t, node, syscall.SIGTERM)
	startSpeaker(t, node)
	lab.Eventually(t, 60*time.Second, "every speaker sees "+node+" publish version 2", func(ctx context.Context) (string, bool) {
		views, err := decisionViews(ctx)
		if err != nil {
			return err.Error(), false
		}
		for _, v := range views {
			i := slices.IndexFunc(v.Members, func(m speaker.MemberView) bool { return m.Name == node })
			if i < 0 || v.Members[i].DecisionVersion != 2 {
				return fmt.Sprintf("%s sees %+v", v.Node, v.Members), false
			}
		}
		return "", true
	})
	after := agreedOwners(t, ns, len(ips), 1)
	if !maps.Equal(before, after) {
		t.Errorf("owners moved with the upgrade: before %v, after %v", before, after)
	}
	// Two hand-overs (away and back), each a few hundred milliseconds of detection at most.
	gap := longestUnanswered(w, watched)
	if gap > 2*time.Second {
		t.Errorf("ARP requests for %s (owned by %s) went unanswered for %v during its restart, bound 2s", watched, node, gap)
	}
	t.Logf("%s upgraded to decision version 2 (which would move %d of %d addresses): all speakers elect with version 1 and agree on the %d owners, unchanged; %v from restart to agreement; %s's longest unanswered stretch %v",
		node, differ, len(ips), len(after), time.Since(start).Round(time.Millisecond), watched, gap.Round(time.Millisecond))
}

// decisionViews reads every node's /decisions.
func decisionViews(ctx context.Context) ([]speaker.DecisionsView, error) {
	var out []speaker.DecisionsView
	for _, n := range env.nodes {
		b, err := lab.AskSocket(ctx, env.site.SpeakerSocket(n), "/decisions")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		var v speaker.DecisionsView
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// agreedOwners waits until every speaker elects with version and names the same L2 owner
// for each of the n addresses of ns's Services, and returns the owners.
func agreedOwners(t *testing.T, ns string, n int, version uint32) map[netip.Addr]string {
	t.Helper()
	var owners map[netip.Addr]string
	lab.Eventually(t, 60*time.Second, fmt.Sprintf("every speaker names the same owners of %d addresses with version %d", n, version), func(ctx context.Context) (string, bool) {
		views, err := decisionViews(ctx)
		if err != nil {
			return err.Error(), false
		}
		var first map[netip.Addr]string
		for _, v := range views {
			if v.DecisionVersion != version {
				return fmt.Sprintf("%s elects with version %d", v.Node, v.DecisionVersion), false
			}
			got := map[netip.Addr]string{}
			for _, s := range v.Services {
				if s.Namespace != ns {
					continue
				}
				for _, ip := range s.IPs {
					if a, err := netip.ParseAddr(ip.IP); err == nil && ip.L2.Owner != "" {
						got[a] = ip.L2.Owner
					}
				}
			}
			if len(got) != n {
				return fmt.Sprintf("%s names owners of %d addresses", v.Node, len(got)), false
			}
			if first == nil {
				first = got
			} else if !maps.Equal(first, got) {
				return fmt.Sprintf("%s: %v, %s: %v", views[0].Node, first, v.Node, got), false
			}
		}
		owners = first
		return "", true
	})
	return owners
}
