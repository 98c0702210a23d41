package speaker

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthlb/berth/config/v1alpha1"
)

// AnnouncementStatus turns decisions into the NodeAnnouncement status: the Services this
// node announces, in the decisions' order.
func AnnouncementStatus(d Decisions) v1alpha1.NodeAnnouncementStatus {
	st := v1alpha1.NodeAnnouncementStatus{DecisionVersion: int64(d.DecisionVersion)}
	for _, m := range d.Members {
		st.Members = append(st.Members, m.Name)
		if m.Name == d.Node {
			st.L2Interfaces = slices.Clone(m.L2Interfaces)
		}
	}
	for _, sd := range d.Services {
		var a v1alpha1.AnnouncedService
		for _, ip := range sd.IPs {
			if ip.L2.Announce {
				a.L2 = append(a.L2, ip.IP.String())
				a.Interfaces = append(a.Interfaces, ip.L2.Interfaces...)
			}
			if ip.BGP.Announce {
				a.BGP = append(a.BGP, ip.IP.String())
				for _, r := range ip.BGP.Routes {
					a.Peers = append(a.Peers, r.Peers...)
				}
			}
		}
		if a.L2 == nil && a.BGP == nil {
			continue
		}
		a.Namespace, a.Name = sd.Namespace, sd.Name
		a.Interfaces, a.Peers = sortedSet(a.Interfaces), sortedSet(a.Peers)
		st.L2 += int32(len(a.L2))
		st.BGP += int32(len(a.BGP))
		st.Services = append(st.Services, a)
	}
	return st
}

func sortedSet(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// report keeps this node's NodeAnnouncement in step with the decisions, writing at most
// once per ReportInterval (longer for big objects, see reportInterval) and only what
// changed. Failed writes (the apiserver is down)
// are retried on the next tick; the announcements themselves never wait for them.
func (s *Speaker) report(ctx context.Context) {
	logger := klog.FromContext(ctx)
	var (
		written   *v1alpha1.NodeAnnouncementStatus
		lastWrite time.Time
		failing   bool
	)
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.changed:
		case <-retry.C:
		}
		if wait := reportInterval(s.opts.ReportInterval, written) - time.Since(lastWrite); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		d := s.state.Decisions()
		if !d.Synced {
			continue
		}
		st := AnnouncementStatus(d)
		st.Conflicts = s.Conflicts(time.Now())
		if len(st.Conflicts) > 0 {
			retry.Reset(conflictMemory / 4) // to drop them once they are old
		}
		if written != nil && equality.Semantic.DeepEqual(*written, st) {
			continue
		}
		lastWrite = time.Now()
		err := s.writeAnnouncement(ctx, st)
		s.opts.Metrics.statusWrite(err)
		if err != nil {
			if !failing {
				logger.Error(err, "Write NodeAnnouncement; retrying every interval", "node", s.opts.Node)
			}
			failing = true
			retry.Reset(s.opts.ReportInterval)
			continue
		}
		if failing {
			logger.Info("NodeAnnouncement written again", "node", s.opts.Node)
		}
		failing = false
		written = &st
		logger.V(2).Info("NodeAnnouncement written", "node", s.opts.Node, "l2", st.L2, "bgp", st.BGP, "services", len(st.Services))
	}
}

// entriesPerInterval is how many Services a NodeAnnouncement may list before its writes
// space out: each write costs the apiserver and etcd in proportion to the object.
const entriesPerInterval = 1000

// reportInterval is the least time between writes: interval, stretched by one interval per
// thousand Services in the last write, so that churn at 10,000 Services costs the apiserver
// ~100 entries a second per node, not 10,000.
func reportInterval(interval time.Duration, last *v1alpha1.NodeAnnouncementStatus) time.Duration {
	if last == nil {
		return interval
	}
	return interval * time.Duration(max(1, len(last.Services)/entriesPerInterval))
}

// writeAnnouncement creates the node's NodeAnnouncement when missing, owned by its Node so
// that it goes with it, and replaces its status.
func (s *Speaker) writeAnnouncement(ctx context.Context, st v1alpha1.NodeAnnouncementStatus) error {
	c := s.opts.CRClient
	obj := &v1alpha1.NodeAnnouncement{}
	err := c.Get(ctx, client.ObjectKey{Name: s.opts.Node}, obj)
	if apierrors.IsNotFound(err) {
		obj = &v1alpha1.NodeAnnouncement{ObjectMeta: metav1.ObjectMeta{
			Name:   s.opts.Node,
			Labels: map[string]string{"app.kubernetes.io/name": "berth", "app.kubernetes.io/component": "speaker"},
		}}
		if o, ok, _ := s.nodes.GetByKey(s.opts.Node); ok {
			n := o.(*corev1.Node)
			obj.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}
		}
		err = c.Create(ctx, obj)
	}
	if err != nil {
		return fmt.Errorf("node announcement %s: %w", s.opts.Node, err)
	}
	obj.Status = st
	if err := c.Status().Update(ctx, obj); err != nil {
		return fmt.Errorf("node announcement %s: update status: %w", s.opts.Node, err)
	}
	return nil
}
