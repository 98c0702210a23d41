//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/lab"
)

// TestContainerSecurity: the lab runs berth as deploy/'s securityContexts say, so that
// everything else in this suite shows berth works under them: each speaker as root with
// only NET_ADMIN, NET_RAW and NET_BIND_SERVICE, unable to gain more, and both binaries on
// a read-only root.
func TestContainerSecurity(t *testing.T) {
	// NET_BIND_SERVICE is bit 10, NET_ADMIN 12, NET_RAW 13.
	const speakerCaps = "0000000000003400"
	for node, sp := range env.berth.Speakers {
		pid := sp.Process().PID()
		status := procStatus(t, pid)
		for k, want := range map[string]string{"Uid": "0", "CapEff": speakerCaps, "CapPrm": speakerCaps,
			"CapBnd": speakerCaps, "CapInh": "0000000000000000", "NoNewPrivs": "1"} {
			if got := status[k]; got != want {
				t.Errorf("speaker on %s (pid %d): %s is %q, want %q", node, pid, k, got, want)
			}
		}
		if opts := rootMountOptions(t, pid); !strings.HasPrefix(opts, "ro") {
			t.Errorf("speaker on %s (pid %d): / is mounted %q, want read-only", node, pid, opts)
		}
	}
	pid := env.berth.Controller.Process().PID()
	if opts := rootMountOptions(t, pid); !strings.HasPrefix(opts, "ro") {
		t.Errorf("controller (pid %d): / is mounted %q, want read-only", pid, opts)
	}
}

// procStatus returns /proc/PID/status's fields (the first word of each value).
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if f := strings.Fields(v); ok && len(f) > 0 {
			out[k] = f[0]
		}
	}
	return out
}

// rootMountOptions returns the per-mount options of / as the process sees it.
func rootMountOptions(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ...; the last / mount wins.
		if f := strings.Fields(sc.Text()); len(f) > 5 && f[4] == "/" {
			opts = f[5]
		}
	}
	if opts == "" {
		t.Fatalf("no / in /proc/%d/mountinfo", pid)
	}
	return opts
}

// TestLeastPrivilege: berth's ServiceAccounts may do what the binaries need (the audit check
// after the suite shows nothing they do is refused) and not the things a compromised
// speaker or controller could abuse, asked of the apiserver's authorizer itself.
func TestLeastPrivilege(t *testing.T) {
	const ns = lab.BerthNamespace
	type ask struct {
		verb, group, resource, sub, name, namespace string
		allowed                                     bool
	}
	cases := map[string][]ask{
		lab.SpeakerAccount: {
			{verb: "get", resource: "secrets", namespace: ns, allowed: true}, // BGP passwords, memberlist keys
			{verb: "get", resource: "secrets", namespace: "default"},
			{verb: "list", resource: "secrets", namespace: "kube-system"},
			{verb: "create", resource: "secrets", namespace: ns},
			{verb: "update", resource: "secrets", namespace: ns},
			{verb: "delete", resource: "secrets", namespace: ns},
			{verb: "update", resource: "services", namespace: "default"},
			{verb: "patch", resource: "services", sub: "status", namespace: "default"},
			{verb: "list", resource: "pods", namespace: "default"},
			{verb: "update", resource: "nodes"},
			{verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: ns},
			{verb: "create", group: "berth.dev", resource: "ippools"},
			{verb: "update", group: "berth.dev", resource: "bgppeers"},
			{verb: "delete", group: "berth.dev", resource: "nodeannouncements"},
			{verb: "update", group: "berth.dev", resource: "nodeannouncements", sub: "status", allowed: true},
		},
		lab.ControllerAccount: {
			{verb: "get", resource: "secrets", name: lab.MemberlistSecret, namespace: ns, allowed: true},
			{verb: "get", resource: "secrets", name: "another", namespace: ns},
			{verb: "list", resource: "secrets", namespace: ns},
			{verb: "get", resource: "secrets", namespace: "default"},
			{verb: "update", resource: "secrets", name: lab.MemberlistSecret, namespace: ns},
			{verb: "patch", resource: "services", sub: "status", namespace: "default", allowed: true},
			{verb: "update", resource: "services", namespace: "default"},
			{verb: "delete", resource: "services", namespace: "default"},
			{verb: "create", resource: "pods", namespace: "default"},
			{verb: "update", resource: "nodes"},
			{verb: "create", group: "berth.dev", resource: "ippools"},
			{verb: "delete", group: "berth.dev", resource: "bgppeers"},
			{verb: "update", group: "berth.dev", resource: "nodeannouncements", sub: "status"},
		},
	}
	for sa, asks := range cases {
		user := "system:serviceaccount:" + ns + ":" + sa
		for _, a := range asks {
			review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   user,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.verb, Group: a.group, Resource: a.resource,
					Subresource: a.sub, Name: a.name, Namespace: a.namespace},
			}}
			got, err := env.kc.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), review, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.Allowed != a.allowed {
				t.Errorf("%s: %s %s %s/%s %q in %q: allowed %v, want %v", sa, a.verb, a.group, a.resource, a.sub, a.name, a.namespace, got.Status.Allowed, a.allowed)
			}
		}
	}
}
