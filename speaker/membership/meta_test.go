package membership

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   Meta
		want Meta
	}{
		{"zero", Meta{}, Meta{}},
		{"sorted", Meta{L2Interfaces: []string{"eth0", "eth1"}, DecisionVersion: 3}, Meta{L2Interfaces: []string{"eth0", "eth1"}, DecisionVersion: 3}},
		{"sorts and dedupes", Meta{L2Interfaces: []string{"eth1", "bond0", "eth1"}}, Meta{L2Interfaces: []string{"bond0", "eth1"}}},
		{"empty list is none", Meta{L2Interfaces: []string{}, DecisionVersion: 1}, Meta{DecisionVersion: 1}},
		{"MACs sorted and deduped", Meta{L2Interfaces: []string{"eth1"}, MACs: []string{"02:00:00:00:01:0b", "02:00:00:00:01:0a", "02:00:00:00:01:0b"}},
			Meta{L2Interfaces: []string{"eth1"}, MACs: []string{"02:00:00:00:01:0a", "02:00:00:00:01:0b"}}},
		{"odd characters", Meta{L2Interfaces: []string{"<x>", `q"`, "é"}}, Meta{L2Interfaces: []string{"<x>", `q"`, "é"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := encodeMeta(tt.in)
			if err != nil {
				t.Fatalf("encodeMeta(): %v", err)
			}
			if b[0] != metaVersion {
				t.Errorf("first byte %d, want version %d", b[0], metaVersion)
			}
			got, err := decodeMeta(b)
			if err != nil {
				t.Fatalf("decodeMeta(%q): %v", b, err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("decodeMeta(encodeMeta()) (-want +got):\n%s", d)
			}
		})
	}
}

// The encoding stays compact, so real nodes are far from the limit.
func TestMetaEncodingIsCompact(t *testing.T) {
	b, err := encodeMeta(Meta{L2Interfaces: []string{"eth0", "eth1"}, DecisionVersion: 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := "\x01" + `{"l2":["eth0","eth1"],"dv":2}`; string(b) != want {
		t.Errorf("encodeMeta() = %q, want %q", b, want)
	}
}

func TestMetaTooLarge(t *testing.T) {
	var ifs []string
	for i := range 40 {
		ifs = append(ifs, fmt.Sprintf("enp%dd0s1f0np0", i)) // 13-15 characters, as real names get
	}
	_, err := encodeMeta(Meta{L2Interfaces: ifs, DecisionVersion: 1})
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("encodeMeta(40 interfaces) error = %v, want ErrMetaTooLarge", err)
	}
	for _, want := range []string{"40 L2 interfaces", fmt.Sprint(memberlist.MetaMaxSize)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	// Right at the limit is fine: memberlist only panics above it.
	name := strings.Repeat("x", memberlist.MetaMaxSize-len("\x01"+`{"l2":[""]}`))
	if b, err := encodeMeta(Meta{L2Interfaces: []string{name}}); err != nil || len(b) != memberlist.MetaMaxSize {
		t.Errorf("encodeMeta(exactly %d bytes) = %d bytes, %v", memberlist.MetaMaxSize, len(b), err)
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrMetaInvalid},
		{"future version", "\x02" + `{"l2":["eth0"]}`, ErrMetaVersion},
		{"version zero", "\x00{}", ErrMetaVersion},
		{"bare JSON", `{"l2":["eth0"]}`, ErrMetaVersion},
		{"garbage", "\x01\xff\xfe", ErrMetaInvalid},
		{"truncated", "\x01" + `{"l2":["eth0"`, ErrMetaInvalid},
		{"wrong type", "\x01" + `{"l2":"eth0"}`, ErrMetaInvalid},
		{"negative version", "\x01" + `{"dv":-1}`, ErrMetaInvalid},
		{"array", "\x01[]", ErrMetaInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeMeta([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Errorf("decodeMeta(%q) error = %v, want %v", tt.in, err, tt.want)
			}
			if d := cmp.Diff(Meta{}, got); d != "" {
				t.Errorf("decodeMeta(%q) on error (-want +got):\n%s", tt.in, d)
			}
		})
	}
}

// Newer speakers may add fields within version 1; older ones must keep reading the rest.
func TestDecodeMetaIgnoresUnknownFields(t *testing.T) {
	in := "\x01" + `{"zone":"rack-7","l2":["eth1","eth0"],"dv":4,"extra":{"a":[1,2]}}`
	got, err := decodeMeta([]byte(in))
	if err != nil {
		t.Fatalf("decodeMeta(%q): %v", in, err)
	}
	want := Meta{L2Interfaces: []string{"eth0", "eth1"}, DecisionVersion: 4}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("decodeMeta() (-want +got):\n%s", d)
	}
}

// Whatever decodes re-encodes to the same Meta (or is refused as too large, since
// decoding replaces invalid UTF-8 with longer runes).
func FuzzDecodeMeta(f *testing.F) {
	for _, s := range []string{
		"", "\x01{}", "\x01null", "\x02{}",
		"\x01" + `{"l2":["eth0","eth1"],"dv":2}`,
		"\x01" + `{"l2":["b","a","a"],"dv":4294967295,"new":true}`,
		"\x01" + `{"l2":["\u00e9\ufffd<"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		enc, err := encodeMeta(m)
		if errors.Is(err, ErrMetaTooLarge) {
			return
		}
		if err != nil {
			t.Fatalf("encodeMeta(%#v): %v", m, err)
		}
		again, err := decodeMeta(enc)
		if err != nil {
			t.Fatalf("decodeMeta(encodeMeta(%#v)) = %q: %v", m, enc, err)
		}
		if d := cmp.Diff(m, again); d != "" {
			t.Errorf("round trip of %q (-first +second):\n%s", b, d)
		}
	})
}
