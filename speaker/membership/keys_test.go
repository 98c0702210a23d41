package membership

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testKey is a valid 32-byte key made of one repeated byte, so that rows stay readable.
func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

var (
	keyOld, keyNew, keyOther = testKey('o'), testKey('n'), testKey('x')
	fpOld, fpNew, fpOther    = Fingerprint(keyOld), Fingerprint(keyNew), Fingerprint(keyOther)
)

func TestKeysFrom(t *testing.T) {
	tests := []struct {
		name    string
		entries map[string][]byte
		want    Keys
		wantErr error
		errSays []string // every bad entry is named
	}{
		{name: "primary only", entries: map[string][]byte{"key": keyOld}, want: Keys{Primary: keyOld}},
		{name: "AES-128 and AES-192", entries: map[string][]byte{"key": make([]byte, 16), "next": make([]byte, 24)},
			want: Keys{Primary: make([]byte, 16), Accepted: [][]byte{make([]byte, 24)}}},
		{name: "accepted in entry-name order", entries: map[string][]byte{"key": keyNew, "previous": keyOld, "a-2025": keyOther},
			want: Keys{Primary: keyNew, Accepted: [][]byte{keyOther, keyOld}}},
		{name: "duplicates dropped", entries: map[string][]byte{"key": keyNew, "next": keyNew, "previous": keyOld, "z": keyOld},
			want: Keys{Primary: keyNew, Accepted: [][]byte{keyOld}}},
		{name: "no primary", entries: map[string][]byte{"next": keyNew}, wantErr: ErrNoKey},
		{name: "empty primary", entries: map[string][]byte{"key": {}}, wantErr: ErrNoKey},
		{name: "nothing", entries: nil, wantErr: ErrNoKey},
		{name: "short primary", entries: map[string][]byte{"key": []byte("short")}, wantErr: ErrInvalidKey,
			errSays: []string{`entry "key": 5 bytes, want 16, 24 or 32`}},
		{name: "base64 text instead of bytes", entries: map[string][]byte{"key": keyOld, "next": []byte("bm5ubm5ubm5ubm5ubm5ubm5ubm5ubm5ubm5ubm5ubm4=")},
			wantErr: ErrInvalidKey, errSays: []string{`entry "next": 44 bytes`}},
		{name: "empty accepted", entries: map[string][]byte{"key": keyOld, "previous": nil}, wantErr: ErrInvalidKey,
			errSays: []string{`entry "previous" is empty`}},
		{name: "every bad entry named", entries: map[string][]byte{"key": make([]byte, 31), "a": make([]byte, 1), "b": keyOld},
			wantErr: ErrInvalidKey, errSays: []string{`entry "key": 31 bytes`, `entry "a": 1 bytes`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := KeysFrom(tt.entries)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("KeysFrom() error = %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.errSays {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("KeysFrom() error %q does not say %q", err, s)
				}
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("KeysFrom() (-want +got):\n%s", d)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	// echo -n 0123456789abcdef | sha256sum → 9f9f5111f7b27a78…
	if got := Fingerprint([]byte("0123456789abcdef")); got != "9f9f5111" {
		t.Errorf("Fingerprint() = %q, want 9f9f5111", got)
	}
}

// The documented rotation, its mistakes, and no change at all.
func TestCompareKeys(t *testing.T) {
	tests := []struct {
		name     string
		old, new Keys
		want     KeyChange
	}{
		{"first keys", Keys{}, Keys{Primary: keyOld},
			KeyChange{Primary: fpOld, Accepted: []string{}, Added: []string{fpOld}}},
		{"unchanged", Keys{Primary: keyOld, Accepted: [][]byte{keyNew}}, Keys{Primary: keyOld, Accepted: [][]byte{keyNew}},
			KeyChange{Primary: fpOld, Accepted: []string{fpNew}}},
		{"step 1: accept the new key", Keys{Primary: keyOld}, Keys{Primary: keyOld, Accepted: [][]byte{keyNew}},
			KeyChange{Primary: fpOld, Accepted: []string{fpNew}, Added: []string{fpNew}}},
		{"step 2: make it primary, accept the old", Keys{Primary: keyOld, Accepted: [][]byte{keyNew}}, Keys{Primary: keyNew, Accepted: [][]byte{keyOld}},
			KeyChange{Primary: fpNew, Accepted: []string{fpOld}, PrimaryChanged: true}},
		{"step 3: drop the old", Keys{Primary: keyNew, Accepted: [][]byte{keyOld}}, Keys{Primary: keyNew},
			KeyChange{Primary: fpNew, Accepted: []string{}, Removed: []string{fpOld}}},
		{"undo step 1", Keys{Primary: keyOld, Accepted: [][]byte{keyNew}}, Keys{Primary: keyOld},
			KeyChange{Primary: fpOld, Accepted: []string{}, Removed: []string{fpNew}}},
		{"steps 1 and 2 at once", Keys{Primary: keyOld}, Keys{Primary: keyNew, Accepted: [][]byte{keyOld}},
			KeyChange{Primary: fpNew, Accepted: []string{fpOld}, Added: []string{fpNew}, PrimaryChanged: true,
				Risks: []KeyRisk{KeyRiskPrimaryNotAccepted}}},
		{"steps 2 and 3 at once", Keys{Primary: keyOld, Accepted: [][]byte{keyNew}}, Keys{Primary: keyNew},
			KeyChange{Primary: fpNew, Accepted: []string{}, Removed: []string{fpOld}, PrimaryChanged: true,
				Risks: []KeyRisk{KeyRiskOldPrimaryDropped}}},
		{"key replaced in one go", Keys{Primary: keyOld}, Keys{Primary: keyNew},
			KeyChange{Primary: fpNew, Accepted: []string{}, Added: []string{fpNew}, Removed: []string{fpOld}, PrimaryChanged: true,
				Risks: []KeyRisk{KeyRiskPrimaryNotAccepted, KeyRiskOldPrimaryDropped}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := compareKeys(tt.old, tt.new)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("compareKeys() (-want +got):\n%s", d)
			}
			if wantChanged := tt.name != "unchanged"; got.Changed() != wantChanged {
				t.Errorf("Changed() = %v, want %v", got.Changed(), wantChanged)
			}
		})
	}
}

// keyStates are keyrings to move between: every transition among them is checked.
var keyStates = []Keys{
	{Primary: keyOld},
	{Primary: keyOld, Accepted: [][]byte{keyNew}},
	{Primary: keyNew, Accepted: [][]byte{keyOld}},
	{Primary: keyNew},
	{Primary: keyNew, Accepted: [][]byte{keyOld, keyOther}},
	{Primary: keyOther, Accepted: [][]byte{keyNew, keyOld}},
	{Primary: keyOld, Accepted: [][]byte{keyOther}},
	{Primary: keyOther},
}

// TestKeyringOps applies the planned calls to memberlist's real Keyring, from every state
// to every other: the ring ends up holding exactly the wanted keys, the wanted primary
// first; every removal takes the ring's last key (the only removal that writes nothing in
// place); and the steps of the documented rotation never remove a key they keep.
func TestKeyringOps(t *testing.T) {
	for i, from := range keyStates {
		for j, to := range keyStates {
			t.Run(fmt.Sprintf("%d to %d", i, j), func(t *testing.T) {
				ring, err := memberlist.NewKeyring(from.Accepted, from.Primary)
				if err != nil {
					t.Fatal(err)
				}
				ops := keyringOps(ringKeys(ring).all(), to)
				removedWanted := false
				for _, o := range ops {
					keys := ring.GetKeys()
					if o.op == opRemove {
						if !bytes.Equal(keys[len(keys)-1], o.key) {
							t.Errorf("remove %s is not of the last key of %v", Fingerprint(o.key), ringKeys(ring))
						}
						removedWanted = removedWanted || bytes.Contains(bytes.Join(to.all(), nil), o.key)
					}
					if err := applyKeyOps(ring, []keyOp{o}); err != nil {
						t.Fatal(err)
					}
				}
				got := ringKeys(ring)
				if !bytes.Equal(got.Primary, to.Primary) {
					t.Errorf("primary %s, want %s", Fingerprint(got.Primary), Fingerprint(to.Primary))
				}
				if d := cmp.Diff(fingerprintSet(to.all()), fingerprintSet(got.all())); d != "" {
					t.Errorf("keys (-want +got):\n%s", d)
				}
				if i+1 == j && j <= 3 && removedWanted { // steps 1, 2, 3
					t.Errorf("rotation step %d removes a key it keeps: %v", j, ops)
				}
				if i == j && len(ops) != 0 {
					t.Errorf("no change planned %v", ops)
				}
			})
		}
	}
}

func fingerprintSet(keys [][]byte) map[string]bool {
	out := map[string]bool{}
	for _, k := range keys {
		out[Fingerprint(k)] = true
	}
	return out
}

// newOfflineList is a List whose memberlist was never created: enough for SetKeys, which
// only touches the keyring memberlist would share.
func newOfflineList(t *testing.T, k Keys) *List {
	t.Helper()
	cfg := validConfig()
	cfg.Keys = k
	_, l, err := newConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestSetKeysRaceFree runs SetKeys through every transition while readers go over the
// ring's keys as memberlist's packet decryption does (GetKeys, then the slice, unlocked).
// Under -race this fails if a change writes a slice a reader may hold; removing the
// middle key with Keyring.RemoveKey alone does.
func TestSetKeysRaceFree(t *testing.T) {
	l := newOfflineList(t, keyStates[0])
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := 0
				for _, k := range l.ring.GetKeys() { // a decryption attempt per key, unlocked
					sum := sha256.Sum256(k)
					n += len(k) + int(sum[0]&0)
				}
				if n == 0 {
					t.Error("reader saw an empty keyring")
					return
				}
			}
		})
	}
	for range 10 {
		for _, from := range keyStates {
			for _, to := range keyStates {
				for _, k := range []Keys{from, to} {
					if _, err := l.SetKeys(k); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	close(stop)
	wg.Wait()
}

func TestSetKeysKeepsKeysOnError(t *testing.T) {
	l := newOfflineList(t, Keys{Primary: keyOld, Accepted: [][]byte{keyNew}})
	want := Keys{Primary: keyOld, Accepted: [][]byte{keyNew}}
	rejected := func() float64 { return testutil.ToFloat64(l.metrics.keysRejected) }

	for _, bad := range []Keys{{}, {Primary: []byte("short")}, {Primary: keyNew, Accepted: [][]byte{make([]byte, 33)}}} {
		if _, err := l.SetKeys(bad); err == nil {
			t.Errorf("SetKeys(%d-byte primary, %d accepted) = nil error", len(bad.Primary), len(bad.Accepted))
		}
		if d := cmp.Diff(want, l.Keys()); d != "" {
			t.Errorf("Keys() after rejected SetKeys (-want +got):\n%s", d)
		}
		if rejected() != 1 {
			t.Errorf("berth_memberlist_keys_rejected = %v, want 1", rejected())
		}
	}
	_, err := l.UpdateKeys(map[string][]byte{"key": keyNew, "previous": []byte("0123456789")})
	if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), `entry "previous": 10 bytes`) {
		t.Errorf("UpdateKeys(bad previous) error = %v, want ErrInvalidKey naming the entry", err)
	}
	if d := cmp.Diff(want, l.Keys()); d != "" {
		t.Errorf("Keys() after rejected UpdateKeys (-want +got):\n%s", d)
	}

	change, err := l.UpdateKeys(map[string][]byte{"key": keyNew, "previous": keyOld})
	if err != nil {
		t.Fatal(err)
	}
	if !change.PrimaryChanged || len(change.Risks) != 0 {
		t.Errorf("UpdateKeys(step 2) = %+v, want a primary change without risks", change)
	}
	if d := cmp.Diff(Keys{Primary: keyNew, Accepted: [][]byte{keyOld}}, l.Keys()); d != "" {
		t.Errorf("Keys() after step 2 (-want +got):\n%s", d)
	}
	if rejected() != 0 {
		t.Errorf("berth_memberlist_keys_rejected = %v after valid keys, want 0", rejected())
	}
	if n := testutil.CollectAndCount(l.metrics.keys); n != 2 {
		t.Errorf("berth_memberlist_key_info has %d series, want 2", n)
	}
	for _, s := range []struct{ fp, role string }{{fpNew, rolePrimary}, {fpOld, roleAccepted}} {
		if v := testutil.ToFloat64(l.metrics.keys.WithLabelValues(s.fp, s.role)); v != 1 {
			t.Errorf("berth_memberlist_key_info{fingerprint=%q,role=%q} = %v, want 1", s.fp, s.role, v)
		}
	}
}
