package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnnouncedService is one Service a node announces, with the IPs per protocol.
type AnnouncedService struct {
	// Namespace is the Service's namespace.
	Namespace string `json:"namespace"`
	// Name is the Service's name.
	Name string `json:"name"`
	// L2 are the Service's IPs this node answers ARP/NDP for.
	// +optional
	// +listType=atomic
	L2 []string `json:"l2,omitempty"`
	// Interfaces are the interfaces the node answers on for the L2 IPs.
	// +optional
	// +listType=atomic
	Interfaces []string `json:"interfaces,omitempty"`
	// BGP are the Service's IPs this node advertises over BGP.
	// +optional
	// +listType=atomic
	BGP []string `json:"bgp,omitempty"`
	// Peers are the BGP peers the node sends the BGP IPs to.
	// +optional
	// +listType=atomic
	Peers []string `json:"peers,omitempty"`
}

// L2Conflict is another machine answering ARP/NDP for an IP this node owns.
type L2Conflict struct {
	// IP is the contested address.
	IP string `json:"ip"`
	// MAC is the other machine's hardware address.
	MAC string `json:"mac"`
	// Interface is where this node saw it.
	Interface string `json:"interface"`
	// Since is when this node first saw it.
	Since metav1.Time `json:"since"`
}

// NodeAnnouncementStatus is what a node's speaker has decided to announce.
type NodeAnnouncementStatus struct {
	// DecisionVersion is the decision version the speaker elected with.
	// +optional
	DecisionVersion int64 `json:"decisionVersion,omitempty"`
	// L2 counts the IPs the node answers ARP/NDP for.
	// +optional
	L2 int32 `json:"l2,omitempty"`
	// BGP counts the IPs the node advertises over BGP.
	// +optional
	BGP int32 `json:"bgp,omitempty"`
	// Members are the speakers this node's memberlist sees alive, sorted. The controller
	// trusts a node's entries only while most other nodes see it alive: a killed speaker
	// cannot withdraw its own entries.
	// +optional
	// +listType=atomic
	Members []string `json:"members,omitempty"`
	// L2Interfaces are this node's interfaces that are up and usable for L2 announcements,
	// as its speaker tells the other members: what berthctl explain needs to redo the
	// election.
	// +optional
	// +listType=atomic
	L2Interfaces []string `json:"l2Interfaces,omitempty"`
	// Conflicts are other machines answering for IPs this node owns, seen within the last
	// minute, sorted by IP.
	// +optional
	// +listType=atomic
	Conflicts []L2Conflict `json:"conflicts,omitempty"`
	// Services are the Services the node announces, sorted by namespace and name. Atomic:
	// only the speaker writes it, and per-entry field management would cost the apiserver
	// more than the write itself at thousands of Services.
	// +optional
	// +listType=atomic
	Services []AnnouncedService `json:"services,omitempty"`
}

// NodeAnnouncement is one node's report of what its berth-speaker announces. The speaker
// owns it (its name is the node's), rewrites it at most once a second, and only when the
// decision changed; berth-controller summarises all of them into each Service's
// berth.dev/Announced condition. One object per node keeps status writes bounded by
// nodes, not by Services × nodes.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=nodeann
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="L2",type=integer,JSONPath=`.status.l2`
// +kubebuilder:printcolumn:name="BGP",type=integer,JSONPath=`.status.bgp`
// +kubebuilder:printcolumn:name="Version",type=integer,JSONPath=`.status.decisionVersion`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeAnnouncement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status NodeAnnouncementStatus `json:"status,omitempty"`
}

// NodeAnnouncementList is a list of NodeAnnouncements.
// +kubebuilder:object:root=true
type NodeAnnouncementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeAnnouncement `json:"items"`
}
