package l2

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

func TestLoPlan(t *testing.T) {
	pfx := netip.MustParsePrefix
	mine := func(p string) loAddr { return loAddr{Prefix: pfx(p), Proto: addrProto, Metric: addrMetric} }
	tests := []struct {
		name    string
		present []loAddr
		want    ipSet
		add     []netip.Addr
		del     []netip.Prefix
	}{
		{"fresh lo", []loAddr{{Prefix: pfx("127.0.0.1/8")}, {Prefix: pfx("::1/128")}},
			set("2001:db8:18:2::1:a"), []netip.Addr{addr("2001:db8:18:2::1:a")}, nil},
		{"IPv4 never goes on lo", nil, set("198.18.2.200", "2001:db8:18:2::1:a"), []netip.Addr{addr("2001:db8:18:2::1:a")}, nil},
		{"already there", []loAddr{mine("2001:db8:18:2::1:a/128")}, set("2001:db8:18:2::1:a"), nil, nil},
		{"leftover of a previous run", []loAddr{mine("2001:db8:18:2::1:b/128")}, set("2001:db8:18:2::1:a"),
			[]netip.Addr{addr("2001:db8:18:2::1:a")}, []netip.Prefix{pfx("2001:db8:18:2::1:b/128")}},
		{"proto alone marks (Linux >= 6.1)", []loAddr{{Prefix: pfx("2001:db8:18:2::1:b/128"), Proto: addrProto}}, nil,
			nil, []netip.Prefix{pfx("2001:db8:18:2::1:b/128")}},
		{"metric alone marks (older kernels drop IFA_PROTO)", []loAddr{{Prefix: pfx("2001:db8:18:2::1:b/128"), Metric: addrMetric}}, nil,
			nil, []netip.Prefix{pfx("2001:db8:18:2::1:b/128")}},
		{"someone else's address stays and is not added again",
			[]loAddr{{Prefix: pfx("2001:db8:18:2::1:a/128")}, {Prefix: pfx("2001:db8:18:2::1:c/128"), Proto: 4, Metric: 256}},
			set("2001:db8:18:2::1:a"), nil, nil},
		{"a marked IPv4 address is removed", []loAddr{mine("198.18.2.200/32")}, set("198.18.2.200"),
			nil, []netip.Prefix{pfx("198.18.2.200/32")}},
		{"a marked address of another length is replaced", []loAddr{mine("2001:db8:18:2::1:a/64")}, set("2001:db8:18:2::1:a"),
			[]netip.Addr{addr("2001:db8:18:2::1:a")}, []netip.Prefix{pfx("2001:db8:18:2::1:a/64")}},
		{"teardown removes all marked", []loAddr{mine("2001:db8:18:2::1:a/128"), mine("2001:db8:18:2::1:b/128"),
			{Prefix: pfx("::1/128")}}, nil, nil, []netip.Prefix{pfx("2001:db8:18:2::1:a/128"), pfx("2001:db8:18:2::1:b/128")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			add, del := loPlan(tt.present, tt.want)
			if d := cmp.Diff(tt.add, add, ipCmp); d != "" {
				t.Errorf("loPlan() add (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.del, del, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
				t.Errorf("loPlan() del (-want +got):\n%s", d)
			}
		})
	}
}

// TestParseAddrMsg decodes an RTM_NEWADDR payload as the kernel sends it for a marked
// address.
func TestParseAddrMsg(t *testing.T) {
	msg := nl.NewIfAddrmsg(unix.AF_INET6)
	msg.Prefixlen = 128
	msg.Index = 1
	b := msg.Serialize()
	ip := addr("2001:db8:18:2::1:a").As16()
	metric := make([]byte, 4)
	binary.NativeEndian.PutUint32(metric, addrMetric)
	for _, a := range []*nl.RtAttr{
		nl.NewRtAttr(unix.IFA_ADDRESS, ip[:]),
		nl.NewRtAttr(unix.IFA_RT_PRIORITY, metric),
		nl.NewRtAttr(ifaProto, []byte{addrProto}),
	} {
		b = append(b, a.Serialize()...)
	}
	got, ok := parseAddrMsg(b, 1)
	want := loAddr{Prefix: netip.MustParsePrefix("2001:db8:18:2::1:a/128"), Proto: addrProto, Metric: addrMetric}
	if !ok || got != want {
		t.Errorf("parseAddrMsg() = %+v, %t; want %+v, true", got, ok, want)
	}
	if !got.marked() {
		t.Error("not marked")
	}
	if _, ok := parseAddrMsg(b, 2); ok {
		t.Error("parseAddrMsg() accepted another link's address")
	}
	if _, ok := parseAddrMsg(b[:4], 1); ok {
		t.Error("parseAddrMsg() accepted a short message")
	}
}
