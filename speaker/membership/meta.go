package membership

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
)

// Meta is what each member publishes for the others' decisions, as memberlist node
// metadata (at most memberlist.MetaMaxSize bytes once encoded).
type Meta struct {
	// L2Interfaces are this node's interfaces usable for L2 that are up, sorted.
	L2Interfaces []string
	// DecisionVersion is the newest decision version this speaker implements.
	DecisionVersion uint32
	// MACs are the hardware addresses of the L2 interfaces, sorted: another berth node
	// answering for an IP during a handover is not a conflict.
	MACs []string
}

// metaVersion is the first byte of encoded metadata. Fields may be added inside version 1
// (decoders ignore unknown JSON fields); bump it only for a change old speakers must not
// read, since they then see the member with zero Meta.
const metaVersion = 1

var (
	// ErrMetaTooLarge means the encoded metadata exceeds memberlist's limit.
	ErrMetaTooLarge = errors.New("node metadata too large")
	// ErrMetaVersion means the metadata has a format version this speaker cannot read.
	ErrMetaVersion = errors.New("unsupported node metadata version")
	// ErrMetaInvalid means the metadata could not be decoded.
	ErrMetaInvalid = errors.New("invalid node metadata")
)

// metaV1 is the version 1 wire form; short keys keep room for many interfaces.
type metaV1 struct {
	L2Interfaces    []string `json:"l2,omitempty"`
	DecisionVersion uint32   `json:"dv,omitempty"`
	MACs            []string `json:"mac,omitempty"`
}

// normalized returns m with its lists sorted and deduplicated, as published.
func (m Meta) normalized() Meta {
	return Meta{L2Interfaces: sortedSet(m.L2Interfaces), DecisionVersion: m.DecisionVersion, MACs: sortedSet(m.MACs)}
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	s = slices.Compact(s)
	if len(s) == 0 {
		return nil
	}
	return s
}

// encodeMeta returns the wire form of m: a version byte, then JSON. It fails with
// ErrMetaTooLarge beyond memberlist's limit, where memberlist itself would panic.
func encodeMeta(m Meta) ([]byte, error) {
	m = m.normalized()
	var buf bytes.Buffer
	buf.WriteByte(metaVersion)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<" would take six bytes of the 512
	if err := enc.Encode(metaV1{L2Interfaces: m.L2Interfaces, DecisionVersion: m.DecisionVersion, MACs: m.MACs}); err != nil {
		return nil, fmt.Errorf("encode node metadata: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes with %d L2 interfaces, memberlist allows %d: match fewer interfaces",
			ErrMetaTooLarge, len(b), len(m.L2Interfaces), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta reads metadata another member published. Unknown JSON fields are ignored, so
// newer speakers may add fields within version 1.
func decodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, fmt.Errorf("%w: empty", ErrMetaInvalid)
	}
	if b[0] != metaVersion {
		return Meta{}, fmt.Errorf("%w: %d (this speaker reads %d)", ErrMetaVersion, b[0], metaVersion)
	}
	var w metaV1
	if err := json.Unmarshal(b[1:], &w); err != nil {
		return Meta{}, fmt.Errorf("%w: %w", ErrMetaInvalid, err)
	}
	return Meta{L2Interfaces: w.L2Interfaces, DecisionVersion: w.DecisionVersion, MACs: w.MACs}.normalized(), nil
}
