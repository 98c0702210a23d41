//go:build privileged

package datapath

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthlb/berth/lab/netns/netnstest"
)

// TestApplyChanges applies a random walk of desired states, each as a change to the last,
// and after each reads the kernel's table back into what it does (which ports are open,
// which frontends go to which backends in which order, which sources are allowed, what
// is masqueraded) and compares that with the desired state; every fifth state also with
// a table built whole from it. The walk crosses shard boundaries and empties and refills
// frontends.
func TestApplyChanges(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	tbl := NewTable()
	t.Cleanup(func() { _ = tbl.Remove(t.Context()) })

	frontends := map[Frontend]ProxyFrontend{}
	randFrontend := func() Frontend {
		if rng.IntN(3) == 0 {
			return Frontend{IP: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(8))}), Protocol: []Protocol{TCP, UDP}[rng.IntN(2)], Port: uint16(80 + rng.IntN(20))}
		}
		return Frontend{IP: netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(16))}), Protocol: []Protocol{TCP, UDP, SCTP}[rng.IntN(3)], Port: uint16(80 + rng.IntN(20))}
	}
	randBackends := func(v4 bool) []Backend {
		bs := make([]Backend, rng.IntN(5))
		for i := range bs {
			a := netip.AddrFrom4([4]byte{198, 19, 1, byte(1 + rng.IntN(6))})
			if !v4 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x19, 15: byte(1 + rng.IntN(6))})
			}
			bs[i] = Backend{Addr: netip.AddrPortFrom(a, uint16(8080+rng.IntN(2))), Masquerade: rng.IntN(3) == 0}
		}
		return bs
	}
	randRanges := func(v4 bool) (bool, []netip.Prefix) {
		if rng.IntN(4) != 0 {
			return false, nil
		}
		// Some nest (a /16 holding /24s; everything): the kernel refuses overlaps.
		var rs []netip.Prefix
		for range rng.IntN(4) {
			bits := []int{16, 24, 24, 0}[rng.IntN(4)]
			if v4 {
				rs = append(rs, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, byte(rng.IntN(4)), 0}), bits).Masked())
			} else {
				rs = append(rs, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x51, byte(rng.IntN(4))}), bits*2).Masked())
			}
		}
		return true, rs
	}
	for step := range 40 {
		// Change a few, remove a few, add many early on so the walk reaches 3 shards.
		for f := range frontends {
			switch rng.IntN(8) {
			case 0:
				delete(frontends, f)
			case 1:
				pf := frontends[f]
				pf.Backends = randBackends(f.IP.Is4())
				pf.RestrictSources, pf.SourceRanges = randRanges(f.IP.Is4())
				frontends[f] = pf
			}
		}
		for range rng.IntN(map[bool]int{true: 60, false: 10}[step < 5]) {
			f := randFrontend()
			pf := ProxyFrontend{Frontend: f, Backends: randBackends(f.IP.Is4())}
			pf.RestrictSources, pf.SourceRanges = randRanges(f.IP.Is4())
			frontends[f] = pf
		}
		d := Desired{Open: []Frontend{randFrontend()}}
		for _, pf := range frontends {
			d.Proxy = append(d.Proxy, pf)
		}
		if _, err := tbl.Apply(t.Context(), d); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if tbl.builds != 1 {
			t.Fatalf("step %d: %d whole-table builds, want only the first: a change failed and fell back", step, tbl.builds)
		}
		want := describe(mustNormalize(t, d))
		got := readBehaviour(t)
		if got != want {
			t.Fatalf("step %d (%d frontends), after a change:\n%s", step, len(d.Proxy), lineDiff(want, got))
		}
		if step%5 == 4 {
			whole := NewTable()
			if _, err := whole.Apply(t.Context(), d); err != nil {
				t.Fatal(err)
			}
			if got := readBehaviour(t); got != want {
				t.Fatalf("step %d, built whole:\n%s", step, lineDiff(want, got))
			}
			tbl = whole // the next change starts from the whole build's indexes
		}
	}
	st, err := tbl.Status()
	if err != nil || st != expected(*tbl.last) {
		t.Errorf("status %+v, %v; want %+v", st, err, expected(*tbl.last))
	}
}

// describe renders what a normalized state does, one sorted line per fact.
func describe(n normalized) string {
	var lines []string
	for _, a := range slices.Concat(n.ips4, n.ips6) {
		lines = append(lines, "closed "+a.String())
	}
	for _, f := range slices.Concat(n.open4, n.open6) {
		lines = append(lines, fmt.Sprintf("open %v", f))
	}
	for _, a := range slices.Concat(n.allowed4, n.allowed6) {
		lines = append(lines, fmt.Sprintf("allow %v from %v", a.Frontend, a.Source))
	}
	for _, f := range slices.Concat(n.masq4, n.masq6) {
		lines = append(lines, fmt.Sprintf("masquerade %v", f))
	}
	for _, pf := range slices.Concat(n.proxy4, n.proxy6) {
		var bs []string
		for _, b := range pf.Backends {
			bs = append(bs, b.Addr.String())
		}
		lines = append(lines, fmt.Sprintf("frontend %v -> [%s]", pf.Frontend, strings.Join(bs, " ")))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// readBehaviour reads the kernel's table into describe's form.
func readBehaviour(t *testing.T) string {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	elems := func(name string) []nftables.SetElement {
		s, err := c.GetSetByName(table, name)
		if err != nil {
			t.Fatalf("set %s: %v", name, err)
		}
		es, err := c.GetSetElements(s)
		if err != nil {
			t.Fatalf("elements of %s: %v", name, err)
		}
		var out []nftables.SetElement
		for _, e := range es {
			if !e.IntervalEnd {
				out = append(out, e)
			}
		}
		return out
	}
	frontendOf := func(k []byte, alen int) Frontend {
		a, _ := netip.AddrFromSlice(k[:alen])
		return Frontend{IP: a, Protocol: Protocol(k[alen]), Port: binary.BigEndian.Uint16(k[alen+4:])}
	}
	var lines []string
	for _, fam := range []struct {
		alen                          int
		ips, open, allowed, masq, fes string
	}{{4, setIPs4, setOpen4, setAllowed4, setMasquerade4, mapProxy4}, {16, setIPs6, setOpen6, setAllowed6, setMasquerade6, mapProxy6}} {
		for _, e := range elems(fam.ips) {
			a, _ := netip.AddrFromSlice(e.Key)
			lines = append(lines, "closed "+a.String())
		}
		for _, e := range elems(fam.open) {
			lines = append(lines, fmt.Sprintf("open %v", frontendOf(e.Key, fam.alen)))
		}
		for _, e := range elems(fam.allowed) {
			first, _ := netip.AddrFromSlice(e.Key[fam.alen+8:])
			last, _ := netip.AddrFromSlice(e.KeyEnd[fam.alen+8:])
			p, _ := first.Prefix(fam.alen*8 - commonSuffixBits(first, last))
			lines = append(lines, fmt.Sprintf("allow %v from %v", frontendOf(e.Key, fam.alen), p))
		}
		for _, e := range elems(fam.masq) {
			lines = append(lines, fmt.Sprintf("masquerade %v", frontendOf(e.Key, fam.alen)))
		}
		for _, e := range elems(fam.fes) {
			f := frontendOf(e.Key, fam.alen)
			if ch := verdictChain(t, e.Val); ch != frontendChain(f) {
				t.Fatalf("%v dispatches to %q, want chain %s", f, ch, frontendChain(f))
			}
			rules, err := c.GetRules(table, &nftables.Chain{Name: frontendChain(f), Table: table})
			if err != nil || len(rules) != 1 {
				t.Fatalf("chain %s: %d rules, %v", frontendChain(f), len(rules), err)
			}
			var idx, modulus uint32
			var shard string
			for _, x := range rules[0].Exprs {
				switch x := x.(type) {
				case *expr.Immediate:
					idx = binaryutil.NativeEndian.Uint32(x.Data)
				case *expr.Numgen:
					modulus = x.Modulus
				case *expr.Lookup:
					shard = x.SetName
				}
			}
			var bs []string
			if modulus > 0 {
				byJ := map[uint32]string{}
				for _, be := range elems(shard) {
					if binaryutil.NativeEndian.Uint32(be.Key[:4]) != idx {
						continue
					}
					a, _ := netip.AddrFromSlice(be.Val[:fam.alen])
					byJ[binaryutil.NativeEndian.Uint32(be.Key[4:])] = netip.AddrPortFrom(a, binary.BigEndian.Uint16(be.Val[fam.alen:])).String()
				}
				if len(byJ) != int(modulus) {
					t.Fatalf("%v: %d backends under index %d in %s, rule draws among %d", f, len(byJ), idx, shard, modulus)
				}
				for j := range modulus {
					bs = append(bs, byJ[j])
				}
			}
			lines = append(lines, fmt.Sprintf("frontend %v -> [%s]", f, strings.Join(bs, " ")))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// verdictChain reads the chain of a verdict map element's data, which the library hands
// over undecoded: nested attributes, the chain name being NFTA_VERDICT_CHAIN.
func verdictChain(t *testing.T, val []byte) string {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(val)
	if err != nil {
		t.Fatal(err)
	}
	for ad.Next() {
		if ad.Type() == unix.NFTA_VERDICT_CHAIN {
			return ad.String()
		}
	}
	return ""
}

// commonSuffixBits counts the trailing bits in which first is all zeros and last all ones.
func commonSuffixBits(first, last netip.Addr) int {
	a, b := first.AsSlice(), last.AsSlice()
	n := 0
	for i := len(a)*8 - 1; i >= 0; i-- {
		bit := byte(0x80 >> (i % 8))
		if a[i/8]&bit != 0 || b[i/8]&bit == 0 {
			break
		}
		n++
	}
	return n
}

// lineDiff lists the lines only one side has.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for _, l := range w {
		if !slices.Contains(g, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestApplyShardReuse empties the second backend map and fills it again with other
// frontends, as changes: the map the kernel still holds is taken over.
func TestApplyShardReuse(t *testing.T) {
	if !netnstest.Reexec(t) {
		return
	}
	tbl := NewTable()
	t.Cleanup(func() { _ = tbl.Remove(t.Context()) })
	frontends := func(ports ...int) Desired {
		var d Desired
		for _, p := range ports {
			f := Frontend{IP: netip.MustParseAddr("203.0.113.1"), Protocol: TCP, Port: uint16(p)}
			d.Proxy = append(d.Proxy, ProxyFrontend{Frontend: f, Backends: []Backend{{Addr: netip.AddrPortFrom(netip.MustParseAddr("198.19.1.2"), uint16(p))}}})
		}
		return d
	}
	span := func(from, to int) []int {
		var out []int
		for p := from; p < to; p++ {
			out = append(out, p)
		}
		return out
	}
	for i, d := range []Desired{
		frontends(span(1000, 1070)...),                                  // indexes 0–69: two maps
		frontends(span(1000, 1064)...),                                  // the second map emptied
		frontends(slices.Concat(span(1000, 1064), span(2000, 2006))...), // and filled again
	} {
		if _, err := tbl.Apply(t.Context(), d); err != nil {
			t.Fatalf("state %d: %v", i, err)
		}
		if want, got := describe(mustNormalize(t, d)), readBehaviour(t); got != want {
			t.Fatalf("state %d:\n%s", i, lineDiff(want, got))
		}
	}
	if tbl.builds != 1 {
		t.Errorf("%d whole builds, want 1", tbl.builds)
	}
}
