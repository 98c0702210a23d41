package lab

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/lab/echo"
)

// The demo app of deploy/lab/demo.
const (
	DemoNamespace = "berth-demo"
	DemoL2        = "echo-l2"  // an address of the lan pool, announced with ARP/NDP
	DemoBGP       = "echo-bgp" // an address of the bgp pool, announced to FRR and BIRD
)

// DemoAddress is one address of a demo Service and the client that reaches it.
type DemoAddress struct {
	Service string
	Addr    netip.AddrPort
	Client  Host
}

// Curl is the command that fetches the echo server's answer from the client.
func (d DemoAddress) Curl() string {
	return fmt.Sprintf("sudo ip netns exec %s curl -gs http://%s/", d.Client.NS, d.Addr)
}

// WaitDemo waits until every address of the demo Services answers from its client: the
// L2 client for echo-l2, the routed client behind FRR for echo-bgp.
func (s *Site) WaitDemo(ctx context.Context) ([]DemoAddress, error) {
	var out []DemoAddress
	for _, d := range []struct {
		svc    string
		client Host
	}{{DemoL2, s.network.L2Client}, {DemoBGP, s.network.Client}} {
		var svc *corev1.Service
		err := wait.PollUntilContextCancel(ctx, waitStep, true, func(ctx context.Context) (bool, error) {
			var err error
			svc, err = s.Client().CoreV1().Services(DemoNamespace).Get(ctx, d.svc, metav1.GetOptions{})
			return err == nil && len(svc.Status.LoadBalancer.Ingress) >= len(svc.Spec.IPFamilies), nil
		})
		if err != nil {
			return nil, fmt.Errorf("demo Service %s/%s has no address: %w", DemoNamespace, d.svc, err)
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(in.IP)
			if err != nil {
				return nil, fmt.Errorf("demo Service %s: ingress %q: %w", d.svc, in.IP, err)
			}
			a := DemoAddress{Service: d.svc, Addr: netip.AddrPortFrom(ip, uint16(svc.Spec.Ports[0].Port)), Client: d.client}
			var last error
			err = wait.PollUntilContextCancel(ctx, waitStep, true, func(ctx context.Context) (bool, error) {
				_, last = echo.Ask(ctx, a.Client.NS, "tcp", a.Addr)
				return last == nil, nil
			})
			if err != nil {
				return nil, fmt.Errorf("demo Service %s: %s does not answer from %s: %w (last: %v)", d.svc, a.Addr, a.Client.Name, err, last)
			}
			out = append(out, a)
		}
	}
	return out, nil
}
