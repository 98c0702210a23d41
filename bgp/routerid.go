package bgp

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
)

// RouterIDFor returns the BGP identifier of the node named nodeName: its IPv4 address v4
// when it has one, else a stable hash of the name (an IPv6-only node). The hash is
// FNV-1a over the name, never 0.0.0.0; two names collide with probability 2^-32.
func RouterIDFor(nodeName string, v4 netip.Addr) netip.Addr {
	if v4.IsValid() {
		v4 = v4.Unmap()
		if v4.Is4() && !v4.IsUnspecified() {
			return v4
		}
	}
	h := fnv.New32a()
	h.Write([]byte(nodeName))
	id := h.Sum32()
	if id == 0 {
		id = 1
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], id)
	return netip.AddrFrom4(b)
}
