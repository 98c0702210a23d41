package speaker

// Reason says why this node does or does not announce an IP. The values are reused verbatim
// as Event reasons, the reason label of decision metrics, status and
// berthctl explain, so they are CamelCase and never change meaning.
type Reason string

// Reasons, in the order the decision checks them: the first that applies is reported.
const (
	// NoPool: no accepted IPPool holds the IP (the pool was deleted or rejected).
	NoPool Reason = "NoPool"
	// NoAdvertisement: no advertisement of the protocol covers the IP's pool.
	NoAdvertisement Reason = "NoAdvertisement"
	// ServiceNotSelected: advertisements cover the pool, but none selects the Service.
	ServiceNotSelected Reason = "ServiceNotSelected"
	// NoEndpoints: no endpoint of the Service is serving, anywhere.
	NoEndpoints Reason = "NoEndpoints"
	// NodeUnknown: this node is not among the Nodes (the cache is not synced, or it was deleted).
	NodeUnknown Reason = "NodeUnknown"
	// NodeExcluded: this node carries node.kubernetes.io/exclude-from-external-load-balancers
	// or its network is unavailable.
	NodeExcluded Reason = "NodeExcluded"
	// NotLive: this node is not a live memberlist member.
	NotLive Reason = "NotLive"
	// Minority (L2): this node sees fewer than half of the speakers it knew (live and
	// recently departed, on Ready nodes; at least three), or half without the lowest-named:
	// it may be the one cut off, so it leaves L2 to the others until it sees more.
	Minority Reason = "Minority"
	// NodeNotSelected: no applicable advertisement selects this node.
	NodeNotSelected Reason = "NodeNotSelected"
	// InterfaceDown (L2): no interface the advertisements allow is up on this node.
	InterfaceDown Reason = "InterfaceDown"
	// NoPeers (BGP): no peer of the applicable advertisements selects this node.
	NoPeers Reason = "NoPeers"
	// NoLocalEndpoints: externalTrafficPolicy is Local and this node has no usable endpoint.
	NoLocalEndpoints Reason = "NoLocalEndpoints"
	// NotElected (L2): this node is eligible, but another node won the IP.
	NotElected Reason = "NotElected"
	// Elected (L2): this node won the IP and answers ARP/NDP for it.
	Elected Reason = "Elected"
	// Announced (BGP): this node announces the IP to its peers.
	Announced Reason = "Announced"
)

// Reasons returns every reason, so that metrics can pre-create their label values.
func Reasons() []Reason {
	return []Reason{
		NoPool, NoAdvertisement, ServiceNotSelected, NoEndpoints, NodeUnknown, NodeExcluded,
		NotLive, Minority, NodeNotSelected, InterfaceDown, NoPeers, NoLocalEndpoints, NotElected, Elected,
		Announced,
	}
}
