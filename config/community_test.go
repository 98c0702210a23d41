package config_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthlb/berth/config"
)

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint32
		wantErr bool
	}{
		{name: "standard", in: "65000:100", want: 65000<<16 | 100},
		{name: "zero", in: "0:0", want: 0},
		{name: "maximum", in: "65535:65535", want: 0xFFFFFFFF},
		{name: "leading zeros", in: "00065:0001", want: 65<<16 | 1},
		{name: "no-export", in: "no-export", want: 0xFFFFFF01},
		{name: "no-advertise", in: "no-advertise", want: 0xFFFFFF02},
		{name: "no-export-subconfed", in: "no-export-subconfed", want: 0xFFFFFF03},
		{name: "no-peer", in: "no-peer", want: 0xFFFFFF04},
		{name: "blackhole", in: "blackhole", want: 0xFFFF029A},

		{name: "empty", in: "", wantErr: true},
		{name: "ASN too big", in: "65536:1", wantErr: true},
		{name: "value too big", in: "1:65536", wantErr: true},
		{name: "negative", in: "-1:1", wantErr: true},
		{name: "plus sign", in: "+1:1", wantErr: true},
		{name: "one part", in: "65000", wantErr: true},
		{name: "three parts", in: "1:2:3", wantErr: true},
		{name: "empty ASN", in: ":1", wantErr: true},
		{name: "empty value", in: "1:", wantErr: true},
		{name: "hex", in: "0x10:1", wantErr: true},
		{name: "unknown name", in: "no-exports", wantErr: true},
		{name: "name is case sensitive", in: "NO-EXPORT", wantErr: true},
		{name: "spaces", in: "1: 2", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.ParseCommunity(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseCommunity(%q) = %#x, %v; want error %v", tc.in, got, err, tc.wantErr)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("ParseCommunity(%q) (-want +got):\n%s", tc.in, d)
			}
		})
	}
}

func TestParseLargeCommunity(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    config.LargeCommunity
		wantErr bool
	}{
		{name: "typical", in: "64512:1:2", want: config.LargeCommunity{Global: 64512, Local1: 1, Local2: 2}},
		{name: "zero", in: "0:0:0", want: config.LargeCommunity{}},
		{name: "maximum", in: "4294967295:4294967295:4294967295",
			want: config.LargeCommunity{Global: 1<<32 - 1, Local1: 1<<32 - 1, Local2: 1<<32 - 1}},

		{name: "empty", in: "", wantErr: true},
		{name: "two parts", in: "1:2", wantErr: true},
		{name: "four parts", in: "1:2:3:4", wantErr: true},
		{name: "global too big", in: "4294967296:0:0", wantErr: true},
		{name: "local2 too big", in: "0:0:4294967296", wantErr: true},
		{name: "negative", in: "1:-2:3", wantErr: true},
		{name: "empty part", in: "1::3", wantErr: true},
		{name: "well-known name", in: "no-export", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.ParseLargeCommunity(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseLargeCommunity(%q) = %v, %v; want error %v", tc.in, got, err, tc.wantErr)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("ParseLargeCommunity(%q) (-want +got):\n%s", tc.in, d)
			}
		})
	}
}

func TestLargeCommunityString(t *testing.T) {
	got := config.LargeCommunity{Global: 4294967295, Local1: 0, Local2: 7}.String()
	if d := cmp.Diff("4294967295:0:7", got); d != "" {
		t.Errorf("String() (-want +got):\n%s", d)
	}
}
