package speaker

import (
	"context"
	"slices"
	"time"

	"k8s.io/klog/v2"

	"github.com/berthlb/berth/datapath"
)

// FrontDoorExecutor keeps the closed front door and the Proxy-mode frontends: the
// datapath package's Table.
type FrontDoorExecutor interface {
	Apply(ctx context.Context, d datapath.Desired) (datapath.Status, error)
}

var protocols = map[string]datapath.Protocol{"TCP": datapath.TCP, "UDP": datapath.UDP, "SCTP": datapath.SCTP}

// FrontDoor is the front door every node keeps: each IP of each Service berth handles is
// closed but for that Service's ports, whether or not this node announces it, so that a
// node taking an IP over has its door in place already. IPs outside berth's pools are
// left alone: an ingress IP written by someone else may be a node's own address.
func FrontDoor(d Decisions) datapath.Desired {
	var out datapath.Desired
	for _, sd := range d.Services {
		for _, ip := range sd.IPs {
			if ip.Pool == "" {
				continue
			}
			out.IPs = append(out.IPs, ip.IP)
			for _, p := range sd.Ports {
				if proto, ok := protocols[p.Protocol]; ok && p.Port != 0 {
					out.Open = append(out.Open, datapath.Frontend{IP: ip.IP, Protocol: proto, Port: p.Port})
				}
			}
		}
	}
	return out
}

// frontDoorPause is the least time between a change and its apply: a burst of changes
// becomes one.
const frontDoorPause = 100 * time.Millisecond

// followFrontDoor applies the front door on every change of the decisions, once they are
// synced; a failed apply is tried again after bgpRetry.
func (s *Speaker) followFrontDoor(ctx context.Context) {
	logger := klog.FromContext(ctx).WithName("datapath")
	sub := s.Subscribe()
	var last *datapath.Desired
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	failing, tried := false, false
	var lastConflicts []string
	pace := pacer{ratio: executorPaceRatio}
	for {
		start := time.Now()
		if d := s.state.Decisions(); d.Synced {
			want := FrontDoor(d)
			others := proxyNodes(s.state.Nodes(), s.opts.Node, s.healthy)
			var conflicts []string
			want.Proxy, conflicts = ProxyFrontends(d, others)
			if !slices.Equal(conflicts, lastConflicts) && len(conflicts) > 0 {
				logger.Info("Services claim the same Proxy-mode IP and port; the first keeps it", "node", s.opts.Node, "conflicts", conflicts)
			}
			lastConflicts = conflicts
			if s.health != nil {
				if len(want.Proxy) == 0 {
					others = nil // nothing to check for
				}
				s.health.SetTargets(others)
			}
			if last == nil || !sameDesired(*last, want) {
				st, err := s.opts.FrontDoor.Apply(ctx, want)
				if !tried {
					tried = true
					close(s.doorTried)
				}
				switch {
				case err != nil:
					if !failing {
						logger.Error(err, "Apply the front door; retrying", "node", s.opts.Node, "ips", len(want.IPs))
					}
					failing = true
					retry.Reset(bgpRetry)
				default:
					if failing {
						logger.Info("Front door applied again", "node", s.opts.Node)
					}
					failing = false
					last = &want
					logger.V(2).Info("Front door applied", "ips", st.IPs, "open", st.Open, "proxy", st.Proxy)
				}
			}
		}
		pace.done(start)
		select {
		case <-ctx.Done():
			return
		case <-sub:
		case <-s.doorKick:
		case <-retry.C:
		}
		select { // let a burst settle
		case <-ctx.Done():
			return
		case <-time.After(frontDoorPause):
		}
		if !pace.wait(ctx) {
			return
		}
	}
}

// healthy says whether node's kube-proxy answers its health check; every node does when
// nothing checks.
func (s *Speaker) healthy(node string) bool { return s.health == nil || s.health.Healthy(node) }

func sameDesired(a, b datapath.Desired) bool {
	return slices.Equal(a.IPs, b.IPs) && slices.Equal(a.Open, b.Open) &&
		slices.EqualFunc(a.Proxy, b.Proxy, func(x, y datapath.ProxyFrontend) bool {
			return x.Frontend == y.Frontend && slices.Equal(x.Backends, y.Backends) &&
				x.RestrictSources == y.RestrictSources && slices.Equal(x.SourceRanges, y.SourceRanges)
		})
}
