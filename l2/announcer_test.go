package l2

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{BurstInterval: -time.Millisecond},
		{ConflictInterval: -time.Second},
		{ResyncInterval: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		in        Config
		burst     int
		interval  time.Duration
		conflicts time.Duration
		resync    time.Duration
	}{
		{Config{}, DefaultBurst, DefaultBurstInterval, DefaultConflictInterval, DefaultResyncInterval},
		{Config{Burst: -1, BurstInterval: time.Second, ConflictInterval: time.Minute, ResyncInterval: time.Hour},
			0, time.Second, time.Minute, time.Hour},
		{Config{Burst: 5}, 5, DefaultBurstInterval, DefaultConflictInterval, DefaultResyncInterval},
	}
	for _, tt := range tests {
		a, err := New(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		c := a.cfg
		if c.Burst != tt.burst || c.BurstInterval != tt.interval || c.ConflictInterval != tt.conflicts || c.ResyncInterval != tt.resync {
			t.Errorf("New(%+v): Burst %d × %v, conflicts %v, resync %v; want %d × %v, %v, %v", tt.in,
				c.Burst, c.BurstInterval, c.ConflictInterval, c.ResyncInterval, tt.burst, tt.interval, tt.conflicts, tt.resync)
		}
	}
}

// TestMetricsNamesAndLabels: the five families exist from the start, labelled by family
// alone, and registering twice fails instead of panicking.
func TestMetricsNamesAndLabels(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, err := New(Config{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				got[mf.GetName()] = append(got[mf.GetName()], l.GetName()+"="+l.GetValue())
			}
		}
	}
	fam := []string{"family=ipv4", "family=ipv6"}
	want := map[string][]string{
		"berth_l2_owned_ips":             fam,
		"berth_l2_takeovers_total":       fam,
		"berth_l2_answers_total":         fam,
		"berth_l2_gratuitous_sent_total": fam,
		"berth_l2_conflicts_total":       fam,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("metrics (-want +got):\n%s", d)
	}
	if _, err := New(Config{Registerer: reg}); err == nil {
		t.Error("a second Announcer on the same registry registered")
	}
}

func TestSetBeforeRun(t *testing.T) {
	a, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	a.Set([]Assignment{{IP: addr("198.18.2.200")}, {IP: addr("ff02::1")}})
	a.Set([]Assignment{{IP: addr("198.18.2.201")}}) // returns at once: the kick slot coalesces
	if got := a.Owned(); len(got) != 0 {
		t.Errorf("Owned() before Run = %v, want nothing", got)
	}
	if d := cmp.Diff([]Assignment{{IP: addr("198.18.2.201")}}, a.wanted(), ipCmp); d != "" {
		t.Errorf("wanted (-want +got):\n%s", d)
	}
}

func TestConflictReporting(t *testing.T) {
	var got []Conflict
	a, err := New(Config{OnConflict: func(c Conflict) { got = append(got, c) }, ConflictInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	a.h.now = func() time.Time { return now }
	m := slices.Clone(strangerMAC)
	a.h.conflict(addr("2001:db8:18:2::1:a%eth1"), "eth1", m)
	a.h.conflict(addr("2001:db8:18:2::1:a"), "eth1", m) // rate-limited, still counted
	a.h.conflict(addr("198.18.2.200"), "eth1", m)
	m[0] = 0xff // the report owns its MAC
	want := []Conflict{
		{IP: addr("2001:db8:18:2::1:a"), Interface: "eth1", MAC: strangerMAC, Seen: now},
		{IP: addr("198.18.2.200"), Interface: "eth1", MAC: strangerMAC, Seen: now},
	}
	if d := cmp.Diff(want, got, ipCmp); d != "" {
		t.Errorf("OnConflict calls (-want +got):\n%s", d)
	}
	if n := testutil.ToFloat64(a.h.metrics.conflicts.WithLabelValues(familyIPv6)); n != 2 {
		t.Errorf("conflicts{ipv6} = %v, want 2", n)
	}
	if n := testutil.ToFloat64(a.h.metrics.conflicts.WithLabelValues(familyIPv4)); n != 1 {
		t.Errorf("conflicts{ipv4} = %v, want 1", n)
	}
}

func TestFriendly(t *testing.T) {
	a, err := New(Config{BerthMAC: isPeer})
	if err != nil {
		t.Fatal(err)
	}
	a.h.setLocal([]linkInfo{{Name: "eth0", MAC: selfMAC}, {Name: "lo"}})
	for _, tt := range []struct {
		mac  []byte
		want bool
	}{{selfMAC, true}, {peerMAC, true}, {strangerMAC, false}, {nil, false}} {
		if got := a.h.friendly(tt.mac); got != tt.want {
			t.Errorf("friendly(%x) = %t, want %t", tt.mac, got, tt.want)
		}
	}
}
