package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ObjectName is the name of another berth object.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
type ObjectName string

// AdvertisementTarget says which pools' addresses an advertisement announces, for which
// Services, from which nodes. Shared by BGPAdvertisement and L2Advertisement.
type AdvertisementTarget struct {
	// IPPools names the pools to announce. Together with ipPoolSelector; both empty means
	// every pool.
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	// +optional
	IPPools []ObjectName `json:"ipPools,omitempty"`
	// IPPoolSelector selects pools to announce by label.
	// +optional
	IPPoolSelector *metav1.LabelSelector `json:"ipPoolSelector,omitempty"`
	// ServiceSelector limits the advertisement to Services with matching labels.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	// NodeSelector limits the nodes that announce; default: every node.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
}

// Community is a standard BGP community "ASN:value" (each 0-65535) or a well-known name.
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self in ['no-export', 'no-advertise', 'no-export-subconfed', 'no-peer', 'blackhole'] || (self.matches('^[0-9]{1,5}:[0-9]{1,5}$') && int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535)",message="must be ASN:value with each part 0-65535, or one of no-export, no-advertise, no-export-subconfed, no-peer, blackhole"
type Community string

// LargeCommunity is a large BGP community (RFC 8092) "global:local1:local2", each 0-4294967295.
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && self.split(':').all(p, int(p) <= 4294967295)",message="must be global:local1:local2 with each part 0-4294967295"
type LargeCommunity string

// BGPAdvertisementSpec says how pools' addresses are announced over BGP.
type BGPAdvertisementSpec struct {
	AdvertisementTarget `json:",inline"`

	// Peers names the BGPPeers to announce to; empty means every peer of the node.
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	// +optional
	Peers []ObjectName `json:"peers,omitempty"`
	// Communities are attached to every announced route.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Communities []Community `json:"communities,omitempty"`
	// LargeCommunities are attached to every announced route.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	LargeCommunities []LargeCommunity `json:"largeCommunities,omitempty"`
	// LocalPref is sent to iBGP peers (ignored for eBGP, as the protocol requires).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	// +optional
	LocalPref *int64 `json:"localPref,omitempty"`
	// AggregationLength is the IPv4 prefix length announced; default 32 (one route per IP).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	// +optional
	AggregationLength *int32 `json:"aggregationLength,omitempty"`
	// AggregationLengthV6 is the IPv6 prefix length announced; default 128.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	// +optional
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
}

// AdvertisementStatus reports whether an advertisement is in use.
type AdvertisementStatus struct {
	// ObservedGeneration is the generation the conditions were computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted, ResolvedRefs.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BGPAdvertisement announces pools' addresses to BGP peers.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgpadv
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.ipPools`
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=`.spec.peers`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Refs",type=string,JSONPath=`.status.conditions[?(@.type=="ResolvedRefs")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPAdvertisementSpec `json:"spec,omitempty"`
	Status AdvertisementStatus  `json:"status,omitempty"`
}

// BGPAdvertisementList is a list of BGPAdvertisements.
// +kubebuilder:object:root=true
type BGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAdvertisement `json:"items"`
}

// InterfaceName is a network interface name, or a pattern ending in "*" ("eth*").
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=16
// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9_.:@-]{1,15}\*?$`
type InterfaceName string

// L2AdvertisementSpec says how pools' addresses are announced with ARP and NDP.
type L2AdvertisementSpec struct {
	AdvertisementTarget `json:",inline"`

	// Interfaces limits the interfaces that answer; default: every up, broadcast-capable
	// interface that is not a bridge port, loopback or container-runtime interface.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +optional
	Interfaces []InterfaceName `json:"interfaces,omitempty"`
}

// L2Advertisement announces pools' addresses on a shared segment with ARP and NDP.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=l2adv
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.ipPools`
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=`.spec.interfaces`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Refs",type=string,JSONPath=`.status.conditions[?(@.type=="ResolvedRefs")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type L2Advertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   L2AdvertisementSpec `json:"spec,omitempty"`
	Status AdvertisementStatus `json:"status,omitempty"`
}

// L2AdvertisementList is a list of L2Advertisements.
// +kubebuilder:object:root=true
type L2AdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []L2Advertisement `json:"items"`
}
