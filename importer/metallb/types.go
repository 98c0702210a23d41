package metallb

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The MetalLB kinds the importer reads, as far as it converts them: local copies of the
// JSON shape of metallb.io/v1beta1 (and v1beta2 for BGPPeer), so that berth does not
// depend on MetalLB's module. Fields of the input that these structs lack are reported by
// unknownFields, never dropped silently.

// MetalLB's API group and the kinds of it the importer knows.
const (
	group             = "metallb.io"
	kindIPAddressPool = "IPAddressPool"
	kindL2Adv         = "L2Advertisement"
	kindBGPAdv        = "BGPAdvertisement"
	kindBGPPeer       = "BGPPeer"
	kindCommunity     = "Community"
	kindBFDProfile    = "BFDProfile"
	kindAddressPool   = "AddressPool" // before 0.13; not converted
	kindService       = "Service"
	kindSecret        = "Secret"
	nsNameKey         = "kubernetes.io/metadata.name" // the label every Namespace has, its name
)

// statusKinds are the metallb.io kinds MetalLB writes itself; they hold nothing to convert.
var statusKinds = []string{"ServiceL2Status", "ServiceBGPStatus", "ConfigurationState", "BGPSessionState"}

type ipAddressPool struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     ipAddressPoolSpec `json:"spec"`
}

type ipAddressPoolSpec struct {
	Addresses         []string           `json:"addresses"`
	AutoAssign        *bool              `json:"autoAssign"`
	AvoidBuggyIPs     bool               `json:"avoidBuggyIPs"`
	ServiceAllocation *serviceAllocation `json:"serviceAllocation"`
}

type serviceAllocation struct {
	Priority           int                    `json:"priority"`
	Namespaces         []string               `json:"namespaces"`
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors"`
	ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors"`
}

type l2Advertisement struct {
	Metadata metav1.ObjectMeta   `json:"metadata"`
	Spec     l2AdvertisementSpec `json:"spec"`
}

type l2AdvertisementSpec struct {
	IPAddressPools         []string               `json:"ipAddressPools"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	Interfaces             []string               `json:"interfaces"`
}

type bgpAdvertisement struct {
	Metadata metav1.ObjectMeta    `json:"metadata"`
	Spec     bgpAdvertisementSpec `json:"spec"`
}

type bgpAdvertisementSpec struct {
	AggregationLength      *int32                 `json:"aggregationLength"`
	AggregationLengthV6    *int32                 `json:"aggregationLengthV6"`
	LocalPref              uint32                 `json:"localPref"`
	Communities            []string               `json:"communities"`
	IPAddressPools         []string               `json:"ipAddressPools"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	Peers                  []string               `json:"peers"`
}

type bgpPeer struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     bgpPeerSpec       `json:"spec"`
}

type bgpPeerSpec struct {
	MyASN                  uint32                 `json:"myASN"`
	PeerASN                uint32                 `json:"peerASN"`
	DynamicASN             string                 `json:"dynamicASN"`
	PeerAddress            string                 `json:"peerAddress"`
	Interface              string                 `json:"interface"`
	SourceAddress          string                 `json:"sourceAddress"`
	PeerPort               uint16                 `json:"peerPort"`
	HoldTime               *metav1.Duration       `json:"holdTime"`
	KeepaliveTime          *metav1.Duration       `json:"keepaliveTime"`
	ConnectTime            *metav1.Duration       `json:"connectTime"`
	RouterID               string                 `json:"routerID"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	Password               string                 `json:"password"`
	PasswordSecret         *secretReference       `json:"passwordSecret"`
	BFDProfile             string                 `json:"bfdProfile"`
	EnableGracefulRestart  bool                   `json:"enableGracefulRestart"`
	EBGPMultiHop           bool                   `json:"ebgpMultiHop"`
	VRF                    string                 `json:"vrf"`
	DisableMP              bool                   `json:"disableMP"`
	DualStackAddressFamily bool                   `json:"dualStackAddressFamily"`
}

type secretReference struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

type community struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     communitySpec     `json:"spec"`
}

type communitySpec struct {
	Communities []communityAlias `json:"communities"`
}

type communityAlias struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// decode reads obj into out (a pointer to one of the structs above) and lists the fields
// of obj's spec that out has no place for, as "spec.field" paths.
func decode(obj map[string]any, out any) (unknown []string, err error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, err
	}
	spec, _ := obj["spec"].(map[string]any)
	f, ok := reflect.TypeOf(out).Elem().FieldByName("Spec")
	if !ok || spec == nil {
		return nil, nil
	}
	unknownFields(spec, f.Type, "spec", &unknown)
	slices.Sort(unknown)
	return unknown, nil
}

// unknownFields appends to out the paths of the keys of m that struct type t has no JSON
// field for, looking into the fields whose types are this package's structs.
func unknownFields(m map[string]any, t reflect.Type, path string, out *[]string) {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		fields[name] = f.Type
	}
	for k, v := range m {
		ft, ok := fields[k]
		if !ok {
			*out = append(*out, path+"."+k)
			continue
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft.PkgPath() == reflect.TypeFor[ipAddressPool]().PkgPath():
			if sub, ok := v.(map[string]any); ok {
				unknownFields(sub, ft, path+"."+k, out)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem().PkgPath() == reflect.TypeFor[ipAddressPool]().PkgPath():
			items, _ := v.([]any)
			for i, item := range items {
				if sub, ok := item.(map[string]any); ok {
					unknownFields(sub, ft.Elem(), fmt.Sprintf("%s.%s[%d]", path, k, i), out)
				}
			}
		}
	}
}
