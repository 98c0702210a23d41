package membership

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/memberlist"
)

// PrimaryEntry names the primary key among the entries of the Secret berth-memberlist (or
// the files of the directory it is mounted as). Every other entry is a key also accepted.
// It equals controller.MemberlistSecretKey, which this package cannot import.
const PrimaryEntry = "key"

// Keys is the memberlist keyring: Primary encrypts all this node sends; Primary and every
// Accepted key decrypt what it receives. Rotating without anyone dropping out is three
// changes, each on every speaker before the next begins: accept the new key, make it
// primary (accepting the old), stop accepting the old (docs/speaker.md).
type Keys struct {
	Primary  []byte
	Accepted [][]byte
}

// KeysFrom reads Keys out of the entries of the Secret berth-memberlist or the files of its
// mounted directory: PrimaryEntry is the primary key, every other entry an accepted key,
// each 16, 24 or 32 bytes (AES-128, -192, -256). Accepted keys come in the order of their
// entry names, without duplicates. The error names every bad entry; any bad entry rejects
// the whole set, so that a typo never silently drops a key.
func KeysFrom(entries map[string][]byte) (Keys, error) {
	var errs []error
	var k Keys
	if p := entries[PrimaryEntry]; len(p) == 0 {
		errs = append(errs, ErrNoKey)
	} else if err := validateKey(fmt.Sprintf("entry %q", PrimaryEntry), p); err != nil {
		errs = append(errs, err)
	} else {
		k.Primary = p
	}
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		if name == PrimaryEntry {
			continue
		}
		v := entries[name]
		if len(v) == 0 {
			errs = append(errs, fmt.Errorf("%w: entry %q is empty: delete the entry to stop accepting a key", ErrInvalidKey, name))
			continue
		}
		if err := validateKey(fmt.Sprintf("entry %q", name), v); err != nil {
			errs = append(errs, err)
			continue
		}
		k.Accepted = append(k.Accepted, v)
	}
	if err := errors.Join(errs...); err != nil {
		return Keys{}, err
	}
	return k.normalized(), nil
}

// normalized copies k, dropping accepted keys equal to the primary or to an earlier one.
func (k Keys) normalized() Keys {
	out := Keys{Primary: bytes.Clone(k.Primary)}
	for _, a := range k.Accepted {
		if bytes.Equal(a, k.Primary) || slices.ContainsFunc(out.Accepted, func(b []byte) bool { return bytes.Equal(a, b) }) {
			continue
		}
		out.Accepted = append(out.Accepted, bytes.Clone(a))
	}
	return out
}

func (k Keys) validate() error {
	if len(k.Primary) == 0 {
		return ErrNoKey
	}
	errs := []error{validateKey("primary key", k.Primary)}
	for i, a := range k.Accepted {
		errs = append(errs, validateKey(fmt.Sprintf("accepted key %d", i), a))
	}
	return errors.Join(errs...)
}

// all is the primary key, then the accepted ones.
func (k Keys) all() [][]byte { return append([][]byte{k.Primary}, k.Accepted...) }

func validateKey(what string, key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	default:
		return fmt.Errorf("%w: %s: %d bytes, want 16, 24 or 32", ErrInvalidKey, what, len(key))
	}
}

// Fingerprint names a key in logs and metrics without revealing it: the first 8 hex digits
// of its SHA-256, as `head -c 32 key | sha256sum | cut -c1-8` prints.
func Fingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// KeyRisk is a typed reason why a change of keys may cut speakers off from each other
// while it spreads: each speaker applies it on its own, some before others.
type KeyRisk string

const (
	// KeyRiskPrimaryNotAccepted: the new primary key was not accepted before. Speakers
	// that do not accept it yet cannot read what this one sends from now on: the step
	// "accept the new key" was skipped or has not reached every speaker.
	KeyRiskPrimaryNotAccepted KeyRisk = "PrimaryNotAcceptedBefore"
	// KeyRiskOldPrimaryDropped: the primary key before the change is no longer accepted.
	// Speakers still encrypting with it cannot reach this one: the step "make the new key
	// primary" has not reached every speaker.
	KeyRiskOldPrimaryDropped KeyRisk = "OldPrimaryDropped"
)

// KeyChange is what a change of keys does, keys named by Fingerprint.
type KeyChange struct {
	// Primary is the primary key after the change; Accepted the other keys accepted, in
	// keyring order.
	Primary  string
	Accepted []string
	// Added and Removed are the keys accepted now and not before, and the reverse.
	Added, Removed []string
	PrimaryChanged bool
	Risks          []KeyRisk
}

// Changed tells whether the change does anything.
func (c KeyChange) Changed() bool {
	return c.PrimaryChanged || len(c.Added) > 0 || len(c.Removed) > 0
}

// compareKeys describes replacing the keys before (zero: none yet) with after.
func compareKeys(before, after Keys) KeyChange {
	fps := func(keys [][]byte) []string {
		out := make([]string, 0, len(keys))
		for _, k := range keys {
			out = append(out, Fingerprint(k))
		}
		return out
	}
	has := func(keys [][]byte, k []byte) bool {
		return slices.ContainsFunc(keys, func(b []byte) bool { return bytes.Equal(b, k) })
	}
	var beforeAll [][]byte
	if len(before.Primary) > 0 {
		beforeAll = before.all()
	}
	afterAll := after.all()
	c := KeyChange{Primary: Fingerprint(after.Primary), Accepted: fps(after.Accepted)}
	for _, k := range afterAll {
		if !has(beforeAll, k) {
			c.Added = append(c.Added, Fingerprint(k))
		}
	}
	for _, k := range beforeAll {
		if !has(afterAll, k) {
			c.Removed = append(c.Removed, Fingerprint(k))
		}
	}
	if len(before.Primary) == 0 || bytes.Equal(before.Primary, after.Primary) {
		return c
	}
	c.PrimaryChanged = true
	if !has(beforeAll, after.Primary) {
		c.Risks = append(c.Risks, KeyRiskPrimaryNotAccepted)
	}
	if !has(afterAll, before.Primary) {
		c.Risks = append(c.Risks, KeyRiskOldPrimaryDropped)
	}
	return c
}

// keyOp is one call on a memberlist.Keyring: AddKey, UseKey or RemoveKey.
type keyOp struct {
	op  keyOpKind
	key []byte
}

type keyOpKind string

const (
	opAdd    keyOpKind = "add"
	opUse    keyOpKind = "use"
	opRemove keyOpKind = "remove"
)

// keyringOps returns the Keyring calls that turn the ring have (primary first, as
// Keyring.GetKeys lists it) into want, such that memberlist never reads a key being
// written: memberlist v0.7.0's RemoveKey shifts the later keys down in place
// (append(keys[:i], keys[i+1:]...)) while packet decryption may be iterating the very
// slice GetKeys handed out, unlocked (still so after hashicorp/memberlist#342, which added
// the locks). Removing only the last key writes nothing in place;
// AddKey and UseKey build new slices. So a key to remove that is not last is reached by
// removing the keys after it and adding back those that stay. The usual rotation steps
// need no such dance: the old primary is always last when it goes.
func keyringOps(have [][]byte, want Keys) []keyOp {
	in := func(keys [][]byte, k []byte) bool {
		return slices.ContainsFunc(keys, func(b []byte) bool { return bytes.Equal(b, k) })
	}
	wantAll := want.all()
	ring := slices.Clone(have)
	var ops []keyOp
	for _, k := range wantAll { // accept first, so nothing wanted is ever missing
		if !in(ring, k) {
			ops = append(ops, keyOp{opAdd, k})
			ring = append(ring, k)
		}
	}
	if !bytes.Equal(ring[0], want.Primary) {
		ops = append(ops, keyOp{opUse, want.Primary})
		ring = append([][]byte{want.Primary}, slices.DeleteFunc(ring, func(b []byte) bool { return bytes.Equal(b, want.Primary) })...)
	}
	first := slices.IndexFunc(ring, func(b []byte) bool { return !in(wantAll, b) })
	if first < 0 {
		return ops
	}
	for i := len(ring) - 1; i >= first; i-- {
		ops = append(ops, keyOp{opRemove, ring[i]})
	}
	for _, k := range ring[first:] {
		if in(wantAll, k) {
			ops = append(ops, keyOp{opAdd, k})
		}
	}
	return ops
}

// applyKeyOps carries out ops on ring.
func applyKeyOps(ring *memberlist.Keyring, ops []keyOp) error {
	for _, o := range ops {
		var err error
		switch o.op {
		case opAdd:
			err = ring.AddKey(bytes.Clone(o.key))
		case opUse:
			err = ring.UseKey(o.key)
		case opRemove:
			err = ring.RemoveKey(o.key)
		default:
			err = fmt.Errorf("unknown keyring operation %q", o.op)
		}
		if err != nil {
			return fmt.Errorf("keyring: %s key %s: %w", o.op, Fingerprint(o.key), err)
		}
	}
	return nil
}

// ringKeys copies the keys of ring: primary, then the others in ring order.
func ringKeys(ring *memberlist.Keyring) Keys {
	all := ring.GetKeys() // memberlist's own slice: read only
	if len(all) == 0 {
		return Keys{}
	}
	k := Keys{Primary: bytes.Clone(all[0])}
	for _, a := range all[1:] {
		k.Accepted = append(k.Accepted, bytes.Clone(a))
	}
	return k
}

// Keys returns the keys in use: the primary, then the accepted ones.
func (l *List) Keys() Keys {
	l.keysMu.Lock()
	defer l.keysMu.Unlock()
	return ringKeys(l.ring)
}

// SetKeys changes the keys live, without a restart: from its return on, this node
// encrypts with k.Primary and decrypts with any of k's keys. Invalid keys change nothing
// (berth_memberlist_keys_rejected turns 1 until valid keys come). The KeyChange says what
// changed and which risks the change carries while it spreads; SetKeys does not refuse a
// risky change, since a speaker that missed a step (a mounted file updated twice between
// two reads) must still converge on what the Secret says.
func (l *List) SetKeys(k Keys) (KeyChange, error) {
	k = k.normalized()
	if err := k.validate(); err != nil {
		l.metrics.keysRejected.Set(1)
		return KeyChange{}, err
	}
	l.stateMu.RLock()
	defer l.stateMu.RUnlock()
	if l.shutdown {
		return KeyChange{}, ErrShutdown
	}
	l.keysMu.Lock()
	defer l.keysMu.Unlock()
	have := ringKeys(l.ring)
	change := compareKeys(have, k)
	err := applyKeyOps(l.ring, keyringOps(have.all(), k))
	l.metrics.setKeys(ringKeys(l.ring))
	if err != nil { // cannot happen with validated keys; the next SetKeys starts from the ring as it is
		l.metrics.keysRejected.Set(1)
		return change, err
	}
	l.metrics.keysRejected.Set(0)
	return change, nil
}

// UpdateKeys is KeysFrom, then SetKeys: entries that KeysFrom rejects change nothing.
func (l *List) UpdateKeys(entries map[string][]byte) (KeyChange, error) {
	k, err := KeysFrom(entries)
	if err != nil {
		l.metrics.keysRejected.Set(1)
		return KeyChange{}, err
	}
	return l.SetKeys(k)
}
