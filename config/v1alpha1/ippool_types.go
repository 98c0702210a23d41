package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPMode says who delivers traffic for an LB IP once it reaches a node.
// +kubebuilder:validation:Enum=VIP;Proxy
type IPMode string

const (
	// IPModeVIP: kube-proxy (or its replacement) handles the LB IP itself.
	IPModeVIP IPMode = "VIP"
	// IPModeProxy: berth's datapath forwards LB IP traffic to NodePorts, as a cloud LB does.
	IPModeProxy IPMode = "Proxy"
)

// AddressRange is an IPv4 or IPv6 CIDR ("198.18.2.192/26", "2001:db8::/64") or an inclusive
// range of one family ("198.18.2.10-198.18.2.20"). A CIDR must be its network address.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=96
// +kubebuilder:validation:XValidation:rule="isCIDR(self) || (size(self.split('-')) == 2 && isIP(self.split('-')[0]) && isIP(self.split('-')[1]))",message="must be a CIDR (198.18.2.192/26) or a range first-last (198.18.2.10-198.18.2.20)"
// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self).ip() == cidr(self).masked().ip()",message="CIDR has host bits set: use its network address"
// +kubebuilder:validation:XValidation:rule="isCIDR(self) || size(self.split('-')) != 2 || !isIP(self.split('-')[0]) || !isIP(self.split('-')[1]) || ip(self.split('-')[0]).family() == ip(self.split('-')[1]).family()",message="range mixes IPv4 and IPv6"
// +kubebuilder:validation:XValidation:rule="isCIDR(self) || size(self.split('-')) != 2 || !isIP(self.split('-')[0]) || !isIP(self.split('-')[1]) || ip(self.split('-')[0]).family() != 4 || ip(self.split('-')[1]).family() != 4 || (int(self.split('-')[0].split('.')[0]) * 16777216 + int(self.split('-')[0].split('.')[1]) * 65536 + int(self.split('-')[0].split('.')[2]) * 256 + int(self.split('-')[0].split('.')[3])) <= (int(self.split('-')[1].split('.')[0]) * 16777216 + int(self.split('-')[1].split('.')[1]) * 65536 + int(self.split('-')[1].split('.')[2]) * 256 + int(self.split('-')[1].split('.')[3]))",message="range first address is greater than last"
type AddressRange string

// IPPoolSpec says which addresses berth may hand out and to which Services.
type IPPoolSpec struct {
	// Addresses are CIDRs and first-last ranges, IPv4 and IPv6 in any mix.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	Addresses []AddressRange `json:"addresses"`

	// AutoAssign lets Services that name no pool get addresses from this one.
	// +kubebuilder:default=true
	// +optional
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs skips IPv4 addresses ending in .0 or .255, which some clients drop.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// Priority orders pools a Service may use: lower values are tried first.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	Priority int32 `json:"priority,omitempty"`

	// ServiceSelector limits the pool to Services with matching labels.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`

	// NamespaceSelector limits the pool to Services in namespaces with matching labels.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// IPMode is written into the Service's status.loadBalancer.ingress[].ipMode.
	// +kubebuilder:default=VIP
	// +optional
	IPMode IPMode `json:"ipMode,omitempty"`
}

// FamilyUsage counts addresses of one family. Counts are decimal strings: an IPv6 /64 holds
// 2^64 addresses, which does not fit an int64.
type FamilyUsage struct {
	// Capacity is the number of addresses the pool can hand out.
	Capacity string `json:"capacity"`
	// InUse is the number of addresses assigned to Services.
	// +optional
	InUse string `json:"inUse,omitempty"`
}

// IPPoolStatus reports what the pool holds and whether it is in use.
type IPPoolStatus struct {
	// ObservedGeneration is the generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// IPv4 counts the pool's IPv4 addresses.
	// +optional
	IPv4 *FamilyUsage `json:"ipv4,omitempty"`
	// IPv6 counts the pool's IPv6 addresses.
	// +optional
	IPv6 *FamilyUsage `json:"ipv6,omitempty"`
	// Conditions: Accepted.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// IPPool is a set of addresses berth assigns to LoadBalancer Services.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ippool
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=`.spec.addresses`
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.ipMode`
// +kubebuilder:printcolumn:name="Auto",type=boolean,JSONPath=`.spec.autoAssign`
// +kubebuilder:printcolumn:name="V4 Used",type=string,JSONPath=`.status.ipv4.inUse`
// +kubebuilder:printcolumn:name="V4 Cap",type=string,JSONPath=`.status.ipv4.capacity`
// +kubebuilder:printcolumn:name="V6 Used",type=string,JSONPath=`.status.ipv6.inUse`
// +kubebuilder:printcolumn:name="V6 Cap",type=string,JSONPath=`.status.ipv6.capacity`,priority=0
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IPPoolSpec   `json:"spec"`
	Status IPPoolStatus `json:"status,omitempty"`
}

// IPPoolList is a list of IPPools.
// +kubebuilder:object:root=true
type IPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPPool `json:"items"`
}
