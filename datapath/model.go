package datapath

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// model is the changing content of the table: every set's elements and every frontend's
// rule. Apply sends the difference between the last model and the next one; a full build
// is the difference from an empty model after creating the fixed chains.
type model struct {
	// elems holds, by set name, each element encoded as one string (see encodeElement):
	// a SetElement per element made a model of 20,000 elements cost 14 MB.
	elems map[string]map[string]struct{}
	// fronts holds each frontend chain's one rule, by chain name.
	fronts map[string]frontRule
	// ids are the frontends' indexes into the backend maps, per family; they stay put
	// while a frontend exists, so that a change rewrites only its own elements.
	ids [2]map[Frontend]uint32
}

// frontRule is a frontend chain's rule: a draw among modulus backends under idx in the
// shard map, or a counted drop when modulus is 0.
type frontRule struct {
	shard   string
	idx     uint32
	modulus uint32
}

// newModel derives the model of n, keeping the frontend indexes of was (for the table
// as it is) and giving new frontends free ones.
func newModel(n normalized, was [2]map[Frontend]uint32) *model {
	m := &model{elems: map[string]map[string]struct{}{}, fronts: map[string]frontRule{}}
	set := func(name string, size int) map[string]struct{} {
		if m.elems[name] == nil {
			m.elems[name] = make(map[string]struct{}, size)
		}
		return m.elems[name]
	}
	for _, fam := range []struct {
		ips                 []netip.Addr
		open, masq          []Frontend
		allowed             []allowed
		proxy               []ProxyFrontend
		setIPs, setOpen     string
		setMasq, setAllowed string
		mapProxy            string
	}{
		{n.ips4, n.open4, n.masq4, n.allowed4, n.proxy4, setIPs4, setOpen4, setMasquerade4, setAllowed4, mapProxy4},
		{n.ips6, n.open6, n.masq6, n.allowed6, n.proxy6, setIPs6, setOpen6, setMasquerade6, setAllowed6, mapProxy6},
	} {
		ips := set(fam.setIPs, len(fam.ips))
		for _, a := range fam.ips {
			ips[encodeElement(a.AsSlice(), nil, nil, "")] = struct{}{}
		}
		for _, s := range []struct {
			name string
			fs   []Frontend
		}{{fam.setOpen, fam.open}, {fam.setMasq, fam.masq}} {
			es := set(s.name, len(s.fs))
			for _, f := range s.fs {
				es[encodeElement(frontendKey(f), nil, nil, "")] = struct{}{}
			}
		}
		allowedSet := set(fam.setAllowed, len(fam.allowed))
		for _, a := range fam.allowed {
			k := frontendKey(a.Frontend)
			allowedSet[encodeElement(slices.Concat(k, a.Source.Masked().Addr().AsSlice()), slices.Concat(k, lastAddr(a.Source).AsSlice()), nil, "")] = struct{}{}
		}
		dispatch := set(fam.mapProxy, len(fam.proxy))
		for _, f := range fam.proxy {
			dispatch[encodeElement(frontendKey(f.Frontend), nil, nil, frontendChain(f.Frontend))] = struct{}{}
		}
	}
	for fam, fs := range [][]ProxyFrontend{n.proxy4, n.proxy6} {
		m.ids[fam] = assignIDs(was[fam], fs)
		for _, f := range fs {
			idx := m.ids[fam][f.Frontend]
			shard := shardName(fam == 1, idx)
			es := set(shard, frontendsPerShard*3)
			for j, b := range f.Backends {
				a := b.Addr.Addr().AsSlice()
				es[encodeElement(markPair(idx, uint32(j)), nil, binary.BigEndian.AppendUint16(a, b.Addr.Port())[:len(a)+2:len(a)+2], "")] = struct{}{}
			}
			m.fronts[frontendChain(f.Frontend)] = frontRule{shard: shard, idx: idx, modulus: uint32(len(f.Backends))}
		}
	}
	return m
}

// encodeElement packs an element into one string: key, key end and data, each after its
// length in a byte, then the verdict's chain. Backend data is an address and a port; the
// port is padded to four bytes on decoding.
func encodeElement(key, keyEnd, val []byte, chain string) string {
	b := make([]byte, 0, 3+len(key)+len(keyEnd)+len(val)+len(chain))
	for _, part := range [][]byte{key, keyEnd, val} {
		b = append(b, byte(len(part)))
		b = append(b, part...)
	}
	return string(append(b, chain...))
}

// decodeElement unpacks what encodeElement packed.
func decodeElement(s string) nftables.SetElement {
	var parts [3][]byte
	for i := range parts {
		n := int(s[0])
		if n > 0 {
			parts[i] = []byte(s[1 : 1+n])
		}
		s = s[1+n:]
	}
	e := nftables.SetElement{Key: parts[0], KeyEnd: parts[1]}
	if parts[2] != nil {
		e.Val = append(parts[2], 0, 0) // the port, padded to a register
	}
	if s != "" {
		e.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: s}
	}
	return e
}

// assignIDs gives each frontend an index: the one it had in was, or the lowest free one.
func assignIDs(was map[Frontend]uint32, fs []ProxyFrontend) map[Frontend]uint32 {
	ids := make(map[Frontend]uint32, len(fs))
	used := map[uint32]bool{}
	for _, f := range fs {
		if id, ok := was[f.Frontend]; ok {
			ids[f.Frontend] = id
			used[id] = true
		}
	}
	next := uint32(0)
	for _, f := range fs {
		if _, ok := ids[f.Frontend]; ok {
			continue
		}
		for used[next] {
			next++
		}
		ids[f.Frontend], used[next] = next, true
	}
	return ids
}

// shardName is the backend map holding index idx: 64 frontends to a map.
func shardName(v6 bool, idx uint32) string {
	name := mapBackends4
	if v6 {
		name = mapBackends6
	}
	return fmt.Sprintf("%s-%d", name, idx/frontendsPerShard)
}

// setDef is the definition of a set of the table by name: the fixed ones and the backend
// shards. Each call returns a new value, free of any batch's set ID.
func setDef(name string) *nftables.Set {
	v4, v6 := nftables.TypeIPAddr, nftables.TypeIP6Addr
	frontend := func(a nftables.SetDatatype) nftables.SetDatatype {
		return nftables.MustConcatSetType(a, nftables.TypeInetProto, nftables.TypeInetService)
	}
	s := &nftables.Set{Table: table, Name: name}
	switch name {
	case setIPs4:
		s.KeyType = v4
	case setIPs6:
		s.KeyType = v6
	case setOpen4, setMasquerade4:
		s.Concatenation, s.KeyType = true, frontend(v4)
	case setOpen6, setMasquerade6:
		s.Concatenation, s.KeyType = true, frontend(v6)
	case setAllowed4:
		s.Concatenation, s.Interval = true, true
		s.KeyType = nftables.MustConcatSetType(v4, nftables.TypeInetProto, nftables.TypeInetService, v4)
	case setAllowed6:
		s.Concatenation, s.Interval = true, true
		s.KeyType = nftables.MustConcatSetType(v6, nftables.TypeInetProto, nftables.TypeInetService, v6)
	case mapProxy4:
		s.IsMap, s.Concatenation, s.KeyType, s.DataType = true, true, frontend(v4), nftables.TypeVerdict
	case mapProxy6:
		s.IsMap, s.Concatenation, s.KeyType, s.DataType = true, true, frontend(v6), nftables.TypeVerdict
	default: // a backend shard
		// Typed mark . mark rather than integer . integer: nft(8) cannot print a
		// concatenation of integers without a length (it aborts listing the table).
		s.IsMap, s.Concatenation = true, true
		s.KeyType = nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeMark)
		s.DataType = nftables.MustConcatSetType(v4, nftables.TypeInetService)
		if strings.HasPrefix(name, mapBackends6+"-") {
			s.DataType = nftables.MustConcatSetType(v6, nftables.TypeInetService)
		}
	}
	return s
}

// fixedSets are the sets the fixed chains look up.
var fixedSets = []string{setIPs4, setIPs6, setOpen4, setOpen6, setAllowed4, setAllowed6,
	mapProxy4, mapProxy6, setMasquerade4, setMasquerade6}

// applyDiff queues on c what turns the table holding old into one holding next. sets are
// the sets created in this batch (their IDs let rules of the batch find them); others
// are named. Order: new shard maps and frontend chains; element deletions (a chain loses
// its dispatch element before it goes); frontend rules, bound to their maps before
// elements are added (binding walks a map's elements); element additions; the chains
// of frontends gone.
func applyDiff(c *nftables.Conn, old, next *model, sets map[string]*nftables.Set) error {
	set := func(name string) *nftables.Set {
		if s, ok := sets[name]; ok {
			return s
		}
		return setDef(name)
	}
	for _, name := range slices.Sorted(maps.Keys(next.elems)) {
		if _, ok := old.elems[name]; ok || sets[name] != nil {
			continue
		}
		s := setDef(name)
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("datapath: set %s: %w", name, err)
		}
		sets[name] = s
	}
	chains := map[string]*nftables.Chain{}
	for _, name := range slices.Sorted(maps.Keys(next.fronts)) {
		if _, ok := old.fronts[name]; !ok {
			chains[name] = c.AddChain(&nftables.Chain{Name: name, Table: table})
		}
	}
	if err := sendElements(old, next, set, c.SetDeleteElements); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(next.fronts)) {
		r := next.fronts[name]
		ch, created := chains[name]
		if !created {
			if old.fronts[name] == r {
				continue
			}
			ch = &nftables.Chain{Name: name, Table: table}
			c.FlushChain(ch)
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: frontExprs(r, set(r.shard))})
	}
	if err := sendElements(next, old, set, c.SetAddElements); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(old.fronts)) {
		if _, ok := next.fronts[name]; !ok {
			ch := &nftables.Chain{Name: name, Table: table}
			c.FlushChain(ch)
			c.DelChain(ch)
		}
	}
	return nil
}

// sendElements queues, with send, the elements of from that other lacks, set by set,
// elementsPerMessage to a message: deletions (old, next) and additions (next, old).
func sendElements(from, other *model, set func(string) *nftables.Set, send func(*nftables.Set, []nftables.SetElement) error) error {
	for _, name := range slices.Sorted(maps.Keys(from.elems)) {
		var es []nftables.SetElement
		for k := range from.elems[name] {
			if _, ok := other.elems[name][k]; !ok {
				es = append(es, decodeElement(k))
			}
		}
		for chunk := range slices.Chunk(es, elementsPerMessage) {
			if err := send(set(name), chunk); err != nil {
				return fmt.Errorf("datapath: elements of %s: %w", name, err)
			}
		}
	}
	return nil
}

// frontExprs is a frontend's rule.
func frontExprs(r frontRule, shard *nftables.Set) []expr.Any {
	if r.modulus == 0 {
		return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
	}
	return dnatExprs(shard, r.idx, r.modulus, strings.HasPrefix(r.shard, mapBackends6+"-"))
}
