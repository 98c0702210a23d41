package metallb

import (
	"encoding/base64"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/config/v1alpha1"
)

// passwordKey is the key of MetalLB's password Secrets (type kubernetes.io/basic-auth),
// kept in berth's copies.
const passwordKey = "password"

// metallbNamespace is where MetalLB runs unless installed elsewhere.
const metallbNamespace = "metallb-system"

// peerIn is a converted BGPPeer, for the advertisements that name peers.
type peerIn struct {
	ref   Ref
	berth string
}

// aliasIn is a Community alias.
type aliasIn struct {
	ref   Ref
	value string
}

func (c *converter) convertCommunities() {
	for _, in := range c.in[kindCommunity] {
		c.res.Read++
		var cm community
		if !c.decodeInput(in, &cm) {
			continue
		}
		for i, a := range cm.Spec.Communities {
			k := key{in.ref.Namespace, a.Name}
			if prev, dup := c.aliases[k]; dup {
				c.warn(in.ref, fmt.Sprintf("spec.communities[%d]", i), "alias %q is also defined by %s, which is used (MetalLB refuses the configuration)", a.Name, prev.ref)
				continue
			}
			c.aliases[k] = aliasIn{ref: in.ref, value: a.Value}
		}
	}
}

func (c *converter) convertBFDProfiles() {
	for _, in := range c.in[kindBFDProfile] {
		c.res.Read++
		c.warn(in.ref, "", "berth has no BFD (its BGP is GoBGP v3, which has none): a node that dies without closing its sessions is noticed by the hold timer; "+
			"set the peers' holdTime as low as the routers allow (3s at least)")
	}
}

func (c *converter) convertPeers() {
	for _, in := range c.in[kindBGPPeer] {
		c.res.Read++
		var p bgpPeer
		if !c.decodeInput(in, &p) {
			continue
		}
		name, _ := c.lookup(kindBGPPeer, in.ref.Namespace, in.ref.Name)
		spec, ok := c.peerSpec(in.ref, name, &p.Spec)
		if !ok {
			continue
		}
		var notes []string
		if p.Spec.DisableMP {
			notes = append(notes, "disableMP: berth always carries one address family per session, that of peerAddress")
		}
		c.peers = append(c.peers, &peerIn{ref: in.ref, berth: name})
		c.emit(&v1alpha1.BGPPeer{TypeMeta: typeMeta("BGPPeer"), ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, []Ref{in.ref}, notes)
	}
}

func (c *converter) peerSpec(ref Ref, name string, s *bgpPeerSpec) (v1alpha1.BGPPeerSpec, bool) {
	spec := v1alpha1.BGPPeerSpec{
		MyASN:         int64(s.MyASN),
		PeerASN:       int64(s.PeerASN),
		PeerAddress:   s.PeerAddress,
		PeerPort:      int32(s.PeerPort),
		SourceAddress: s.SourceAddress,
		RouterID:      s.RouterID,
		ConnectTime:   s.ConnectTime,
		EBGPMultiHop:  s.EBGPMultiHop,
	}
	switch {
	case s.Interface != "":
		c.fail(ref, "spec.interface", "BGP unnumbered over an interface: berth peers with an address (peerAddress) only")
		return spec, false
	case s.PeerAddress == "":
		c.fail(ref, "spec.peerAddress", "missing")
		return spec, false
	case s.MyASN == 0:
		c.fail(ref, "spec.myASN", "missing")
		return spec, false
	case s.PeerASN != 0 && s.DynamicASN != "":
		c.fail(ref, "spec.dynamicASN", "set together with peerASN, which MetalLB refuses")
		return spec, false
	case s.PeerASN == 0 && s.DynamicASN == "internal":
		spec.PeerASN = spec.MyASN
		c.warn(ref, "spec.dynamicASN", "internal: berth needs the peer's ASN, which for iBGP is myASN; peerASN is set to %d", s.MyASN)
	case s.PeerASN == 0 && s.DynamicASN != "":
		c.fail(ref, "spec.dynamicASN", "%s: berth needs the peer's ASN; set peerASN to the router's", s.DynamicASN)
		return spec, false
	case s.PeerASN == 0:
		c.fail(ref, "spec.peerASN", "missing")
		return spec, false
	}
	c.timers(ref, s, &spec)
	if s.RouterID != "" {
		c.warn(ref, "spec.routerID", "kept, but berth does not apply a peer's routerID yet: GoBGP v3 has one router ID per node, the node's IPv4 address (docs/speaker.md)")
	}
	if !c.password(ref, name, s, &spec) {
		return spec, false
	}
	sel, exact := anyOf(s.NodeSelectors)
	spec.NodeSelector = sel
	if !exact {
		c.warn(ref, "spec.nodeSelectors", "MetalLB peers from nodes any of the selectors match; berth's one nodeSelector cannot say that, "+
			"so only nodes all of them match peer: give those nodes a common label and select it")
	}
	if s.EnableGracefulRestart {
		spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true}
	}
	if s.BFDProfile != "" {
		c.warn(ref, "spec.bfdProfile", "%q left out: berth has no BFD; the hold timer (holdTime) detects a dead session", s.BFDProfile)
	}
	if s.VRF != "" {
		c.warn(ref, "spec.vrf", "%q left out: berth opens every session in the node's default VRF", s.VRF)
	}
	if s.DualStackAddressFamily {
		c.warn(ref, "spec.dualStackAddressFamily", "left out: a berth session carries only its own address family; "+
			"add a BGPPeer for the router's address of the other family")
	}
	return spec, true
}

// timers converts the BGP timers. MetalLB derives a missing hold time from the keepalive
// time (×3), and accepts a keepalive equal to the hold time, which berth does not.
func (c *converter) timers(ref Ref, s *bgpPeerSpec, spec *v1alpha1.BGPPeerSpec) {
	hold, ka := s.HoldTime, s.KeepaliveTime
	if hold == nil && ka != nil {
		hold = &metav1.Duration{Duration: 3 * ka.Duration}
	}
	spec.HoldTime, spec.KeepaliveTime = hold, ka
	if hold == nil {
		return
	}
	if hold.Duration == 0 {
		c.warn(ref, "spec.holdTime", "0s turns keepalives off in MetalLB; berth always runs a hold timer and uses its default, 90s, instead")
		return
	}
	if ka != nil && ka.Duration >= hold.Duration {
		spec.KeepaliveTime = &metav1.Duration{Duration: hold.Duration / 3}
		c.warn(ref, "spec.keepaliveTime", "%v is not less than holdTime %v, which berth requires: set to a third of it, %v",
			ka.Duration, hold.Duration, spec.KeepaliveTime.Duration)
	}
}

// password points the peer at a Secret in berth's namespace, the only one berth reads
// passwords from: a new Secret for an inline password, a copy of the input's Secret, or
// the name of one the user must copy.
func (c *converter) password(ref Ref, peer string, s *bgpPeerSpec, spec *v1alpha1.BGPPeerSpec) bool {
	ns := c.opts.Namespace
	switch {
	case s.Password != "" && s.PasswordSecret != nil && s.PasswordSecret.Name != "":
		c.fail(ref, "spec.passwordSecret", "set together with password, which MetalLB refuses")
		return false
	case s.Password != "":
		name := c.claim(kindSecret, peer+"-bgp-password")
		spec.Password = &v1alpha1.SecretKeyRef{Name: name, Key: passwordKey}
		c.emit(&corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kindSecret},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: corev1.SecretTypeOpaque,
			StringData: map[string]string{passwordKey: s.Password}}, []Ref{ref}, nil)
		c.warn(ref, "spec.password", "berth reads passwords only from Secrets in its namespace: the output holds it in the Secret %s/%s; "+
			"keep the output as private as the password (or create that Secret yourself and leave it out)", ns, name)
	case s.PasswordSecret != nil && s.PasswordSecret.Name != "":
		// MetalLB reads the Secret from its own namespace, the peer's.
		from := key{ns: ref.Namespace, name: s.PasswordSecret.Name}
		if from.ns == "" {
			from.ns = s.PasswordSecret.Namespace
		}
		if from.ns == "" {
			from.ns = metallbNamespace
		}
		if from.ns == ns {
			spec.Password = &v1alpha1.SecretKeyRef{Name: from.name, Key: passwordKey}
			return true
		}
		if name, ok := c.copied[from]; ok { // another peer's Secret too
			spec.Password = &v1alpha1.SecretKeyRef{Name: name, Key: passwordKey}
			return true
		}
		name := c.claim(kindSecret, from.name)
		c.copied[from] = name
		spec.Password = &v1alpha1.SecretKeyRef{Name: name, Key: passwordKey}
		if in, ok := c.secrets[from]; ok {
			c.copySecret(ref, in, name)
			return true
		}
		c.warn(ref, "spec.passwordSecret", "berth reads passwords only from Secrets in its namespace: before applying, copy the Secret %s/%s there "+
			"(without showing the password): kubectl create secret generic %s -n %s --from-literal=%s=\"$(kubectl get secret -n %s %s -o jsonpath='{.data.%s}' | base64 -d)\"",
			from.ns, from.name, name, ns, passwordKey, from.ns, from.name, passwordKey)
	}
	return true
}

// copySecret writes the password of the input's Secret in into a Secret of berth's namespace.
func (c *converter) copySecret(peer Ref, in input, name string) {
	delete(c.secrets, key{in.ref.Namespace, in.ref.Name})
	out := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kindSecret},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.opts.Namespace}, Type: corev1.SecretTypeOpaque}
	data, _ := in.obj["data"].(map[string]any)
	stringData, _ := in.obj["stringData"].(map[string]any)
	if v, ok := data[passwordKey].(string); ok {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			c.warn(in.ref, "data."+passwordKey, "not base64: the copy %s/%s is not written; create it with the password under that key", c.opts.Namespace, name)
			return
		}
		out.Data = map[string][]byte{passwordKey: b}
	} else if v, ok := stringData[passwordKey].(string); ok {
		out.StringData = map[string]string{passwordKey: v}
	} else {
		c.warn(in.ref, "data", "no key %q, where MetalLB reads the password: the copy %s/%s is not written; create it with the password under that key",
			passwordKey, c.opts.Namespace, name)
		return
	}
	c.emit(out, []Ref{peer, in.ref}, nil)
	c.warn(peer, "spec.passwordSecret", "berth reads passwords only from Secrets in its namespace: the output holds a copy of %s as %s/%s; "+
		"keep the output as private as the password", strings.TrimPrefix(in.ref.String(), kindSecret+" "), c.opts.Namespace, name)
}
