package lab

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/lab/proc"
)

// reportLogTail bounds how much of each process's log Report writes.
const reportLogTail = 3000

// Report writes what a post-mortem of a failed test needs: every Pod with its node, phase,
// IPs and conditions, every Event, and the tail of every running process's log. It keeps
// going past errors, writing them in place.
func (s *Site) Report(ctx context.Context, w io.Writer) {
	c := s.Client()
	if pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		fmt.Fprintf(w, "pods: %v\n", err)
	} else {
		for _, p := range pods.Items {
			fmt.Fprintf(w, "pod %s/%s node=%q phase=%s ips=%v conditions=%v\n",
				p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIPs, p.Status.Conditions)
		}
	}
	if evs, err := c.CoreV1().Events("").List(ctx, metav1.ListOptions{}); err != nil {
		fmt.Fprintf(w, "events: %v\n", err)
	} else {
		for _, e := range evs.Items {
			fmt.Fprintf(w, "event %s %s/%s: %s %s\n", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	procs := s.network.Runner().Processes()
	slices.SortFunc(procs, func(a, b *proc.Process) int { return strings.Compare(a.Name(), b.Name()) })
	for _, p := range procs {
		log := p.Log()
		if i := len(log) - reportLogTail; i > 0 {
			log = log[i:]
		}
		fmt.Fprintf(w, "--- %s (pid %d) log tail:\n%s\n", p.Name(), p.PID(), log)
	}
}
