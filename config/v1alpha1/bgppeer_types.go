package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretKeyRef names one key of a Secret in berth's own namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key within the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// GracefulRestart configures BGP graceful restart (RFC 4724) for a session.
type GracefulRestart struct {
	// Enabled turns graceful restart on.
	Enabled bool `json:"enabled"`
	// RestartTime is how long the router keeps our routes while the speaker restarts.
	// +kubebuilder:default="120s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') && duration(self) >= duration('1s') && duration(self) <= duration('4095s')",message="must be a duration between 1s and 4095s, such as 120s"
	// +optional
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
}

// BGPPeerSpec describes a BGP session from the selected nodes to one router.
// +kubebuilder:validation:XValidation:rule="!has(self.ebgpMultiHop) || !self.ebgpMultiHop || self.myASN != self.peerASN",message="ebgpMultiHop applies to eBGP only, but myASN equals peerASN (iBGP)",fieldPath=".ebgpMultiHop"
// +kubebuilder:validation:XValidation:rule="!has(self.holdTime) || !has(self.keepaliveTime) || !self.holdTime.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || !self.keepaliveTime.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || duration(self.keepaliveTime) < duration(self.holdTime) || (duration(self.holdTime) == duration('0s') && duration(self.keepaliveTime) == duration('0s'))",message="keepaliveTime must be less than holdTime",fieldPath=".keepaliveTime"
// +kubebuilder:validation:XValidation:rule="has(self.holdTime) || !has(self.keepaliveTime) || !self.keepaliveTime.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || duration(self.keepaliveTime) < duration('90s')",message="keepaliveTime must be less than holdTime (default 90s)",fieldPath=".keepaliveTime"
// +kubebuilder:validation:XValidation:rule="!has(self.keepaliveTime) || !self.keepaliveTime.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') || duration(self.keepaliveTime) > duration('0s') || (has(self.holdTime) && self.holdTime.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') && duration(self.holdTime) == duration('0s'))",message="keepaliveTime 0s turns keepalives off, which needs holdTime 0s too",fieldPath=".keepaliveTime"
// +kubebuilder:validation:XValidation:rule="!has(self.sourceAddress) || !isIP(self.sourceAddress) || !isIP(self.peerAddress) || ip(self.sourceAddress).family() == ip(self.peerAddress).family()",message="sourceAddress must be of the same family as peerAddress",fieldPath=".sourceAddress"
type BGPPeerSpec struct {
	// MyASN is the nodes' autonomous system number.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	MyASN int64 `json:"myASN"`
	// PeerASN is the router's autonomous system number. Equal to MyASN means iBGP.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	PeerASN int64 `json:"peerASN"`
	// PeerAddress is the router's IPv4 or IPv6 address.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || (!ip(self).isUnspecified() && !ip(self).isLoopback())",message="must not be an unspecified or loopback address"
	PeerAddress string `json:"peerAddress"`
	// PeerPort is the router's BGP port.
	// +kubebuilder:default=179
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	PeerPort int32 `json:"peerPort,omitempty"`
	// SourceAddress is the local address the session uses; default: chosen by the kernel.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IPv4 or IPv6 address"
	// +optional
	SourceAddress string `json:"sourceAddress,omitempty"`
	// RouterID is the BGP identifier; default: the node's IPv4 address, or a stable hash of
	// the node name on IPv6-only nodes.
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4 && !ip(self).isUnspecified()",message="must be a non-zero IPv4 address"
	// +optional
	RouterID string `json:"routerID,omitempty"`
	// HoldTime is the BGP hold time: 0s (no keepalives) or at least 3s. Default 90s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') && (duration(self) == duration('0s') || (duration(self) >= duration('3s') && duration(self) <= duration('65535s')))",message="must be a duration of 0s or between 3s and 65535s, such as 90s"
	// +optional
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`
	// KeepaliveTime is the interval between keepalives. Default: a third of holdTime.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') && duration(self) <= duration('21845s')",message="must be a duration between 0s and 21845s, such as 30s"
	// +optional
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`
	// ConnectTime is the interval between connection attempts. Default 10s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$') && duration(self) >= duration('1s') && duration(self) <= duration('65535s')",message="must be a duration between 1s and 65535s, such as 10s"
	// +optional
	ConnectTime *metav1.Duration `json:"connectTime,omitempty"`
	// EBGPMultiHop lets an eBGP session cross routers (TTL 255).
	// +optional
	EBGPMultiHop bool `json:"ebgpMultiHop,omitempty"`
	// Password is the TCP-MD5 password, read from a Secret in berth's namespace.
	// +optional
	Password *SecretKeyRef `json:"password,omitempty"`
	// GracefulRestart keeps routes on the router while a speaker restarts.
	// +optional
	GracefulRestart *GracefulRestart `json:"gracefulRestart,omitempty"`
	// NodeSelector limits the session to matching nodes; default: every node.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
}

// SessionState is a BGP finite-state-machine state as a node saw it.
// +kubebuilder:validation:Enum=Unknown;Idle;Connect;Active;OpenSent;OpenConfirm;Established
type SessionState string

// Session states.
const (
	SessionUnknown     SessionState = "Unknown"
	SessionIdle        SessionState = "Idle"
	SessionConnect     SessionState = "Connect"
	SessionActive      SessionState = "Active"
	SessionOpenSent    SessionState = "OpenSent"
	SessionOpenConfirm SessionState = "OpenConfirm"
	SessionEstablished SessionState = "Established"
)

// PeerNodeStatus is one node's session with the peer. Each speaker writes only its own entry.
type PeerNodeStatus struct {
	// Node is the Kubernetes node name.
	Node string `json:"node"`
	// State is the session state.
	State SessionState `json:"state"`
	// Since is when the session entered State.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// Reason is a CamelCase word for why the session is not Established: Connecting,
	// ConnectFailed, AuthMismatchLikely.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message is the last error, readable.
	// +optional
	Message string `json:"message,omitempty"`
	// Failures counts consecutive failed attempts; retries back off exponentially.
	// +optional
	Failures int32 `json:"failures,omitempty"`
	// RetryInterval is the reconnect interval in use: it doubles with each failure up to
	// two minutes, and returns to the peer's connectTime once the session is up.
	// +optional
	RetryInterval *metav1.Duration `json:"retryInterval,omitempty"`
	// PrefixesSent is the number of prefixes advertised on the session.
	// +optional
	PrefixesSent int32 `json:"prefixesSent,omitempty"`
}

// BGPPeerStatus reports validity and per-node session state.
type BGPPeerStatus struct {
	// ObservedGeneration is the generation the conditions were computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Nodes holds each node's session state.
	// +listType=map
	// +listMapKey=node
	// +optional
	Nodes []PeerNodeStatus `json:"nodes,omitempty"`
	// Established is the number of nodes whose session is Established.
	// +optional
	Established int32 `json:"established,omitempty"`
}

// BGPPeer is a router that berth's speakers open BGP sessions with.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgppeer
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.peerAddress`
// +kubebuilder:printcolumn:name="My ASN",type=integer,JSONPath=`.spec.myASN`
// +kubebuilder:printcolumn:name="Peer ASN",type=integer,JSONPath=`.spec.peerASN`
// +kubebuilder:printcolumn:name="Established",type=integer,JSONPath=`.status.established`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPPeerSpec   `json:"spec"`
	Status BGPPeerStatus `json:"status,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}
