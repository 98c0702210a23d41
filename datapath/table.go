package datapath

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TableName is berth's table, family inet.
const TableName = "berth"

// doorPriority runs the front door after conntrack (-200), so that the replies of
// connections this node opened from an LB IP (hostNetwork processes, IPVS) pass as
// established and fragments come reassembled, and before kube-proxy's chains (-110 and
// later). A dropped packet's conntrack entry was never confirmed: a port scan still
// leaves none.
const doorPriority = -150

// Names inside the table.
const (
	chainPrerouting = "prerouting"
	chainDoor4      = "door4"
	chainDoor6      = "door6"
	setIPs4         = "lb-ips4"
	setIPs6         = "lb-ips6"
	setOpen4        = "open4"
	setOpen6        = "open6"
	setAllowed4     = "allowed4"
	setAllowed6     = "allowed6"
)

// ICMP types that pass a closed door: errors (unreachable, time exceeded, parameter
// problem; for IPv6 also packet too big) and IPv6 neighbour discovery.
var (
	icmp4Pass = []byte{3, 11, 12}
	icmp6Pass = []byte{1, 2, 3, 4, 133, 134, 135, 136, 137}
)

// socketBuffer sizes the netlink socket: one batch carries an acknowledgement request per
// object, and the default 208 KiB overflows at a few hundred rules or elements.
const socketBuffer = 16 << 20

// elementsPerMessage bounds the elements in one netlink message: their list is one
// attribute, whose length is 16 bits, and 2,000 IPv6 keys overflowed it (the kernel kept
// 179). Several messages still go in the one batch.
const elementsPerMessage = 500

// Status is what the table holds: read back from the kernel by Table.Status, as sent by
// Apply.
type Status struct {
	// Present says the table exists.
	Present bool
	// IPs and Open count the elements of the address and port sets, Proxy the Proxy
	// frontends.
	IPs, Open, Proxy int
	// Chains and Rules count berth's chains and their rules.
	Chains, Rules int
}

// Table is berth's table in the network namespace of the calling process. Apply and
// Remove may be called from any goroutine.
type Table struct {
	mu   sync.Mutex
	last *normalized // last state applied; nil before the first Apply or after Remove
	// ids are the frontends' backend map indexes in the table; nil when the next Apply
	// builds it whole. The table's content is derived again from last and ids when a
	// change needs it rather than kept: at 10,000 Services it would be megabytes that a
	// speaker holds for nothing between changes.
	ids *[2]map[Frontend]uint32
	// builds counts whole-table batches (first, fallback, repair): a change should not
	// need one.
	builds int
}

// NewTable returns a Table; it changes nothing until Apply.
func NewTable() *Table { return &Table{} }

func dial() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithSockOptions(func(nc *netlink.Conn) error {
		if err := nc.SetReadBuffer(socketBuffer); err != nil {
			return err
		}
		return nc.SetWriteBuffer(socketBuffer)
	}))
	if err != nil {
		return nil, fmt.Errorf("datapath: netlink: %w", err)
	}
	return c, nil
}

var table = &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}

// Apply makes the table exactly d, in one batch: the whole table the first time (and after
// a failure or Remove), else only what changed since the last Apply, so that a change to
// one Service touches its own elements and chains. It returns what the table now holds.
func (t *Table) Apply(ctx context.Context, d Desired) (Status, error) {
	n, err := normalize(d)
	if err != nil {
		return Status{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var old *model
	var was [2]map[Frontend]uint32
	if t.ids != nil {
		old, was = newModel(*t.last, *t.ids), *t.ids
	}
	m := newModel(n, was)
	if old == nil {
		t.builds++
	}
	err = apply(old, m)
	if err != nil && old != nil {
		// The kernel held something else than the last model (an element deleted by
		// hand makes its deletion fail): build the whole table instead.
		t.builds++
		err = apply(nil, m)
	}
	if err != nil {
		t.last, t.ids = nil, nil // nothing for Run to repair until an Apply succeeds
		return Status{}, err
	}
	t.last, t.ids = &n, &m.ids
	// The kernel took the batch whole, so the table is what it carried; reading 4,000
	// chains back cost more than a change (Status and Run read back).
	return expected(n), nil
}

// Remove deletes the table; a missing table is no error.
func (t *Table) Remove(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last, t.ids = nil, nil
	c, err := dial()
	if err != nil {
		return err
	}
	c.AddTable(table) // so that the delete finds one
	c.DelTable(table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("datapath: delete table %s: %w", TableName, err)
	}
	return nil
}

// Status reads the table back.
func (t *Table) Status() (Status, error) { return read() }

// Run checks the table every interval and applies the last state again when the kernel
// holds something else (a rule or set deleted by hand, the table flushed; an element
// deleted by hand goes unnoticed until the next change). repaired is told of each
// repair: what was found, what was wanted, and the re-apply's error. It returns when ctx
// ends.
func (t *Table) Run(ctx context.Context, interval time.Duration, repaired func(found, want Status, err error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.mu.Lock()
		if t.last != nil {
			// Rules and sets, not their elements: cheap enough every few seconds.
			found, rerr := readTable(false)
			want := expected(*t.last)
			want.IPs, want.Open, want.Proxy = 0, 0, 0
			if rerr != nil || found != want {
				t.builds++
				err := errors.Join(rerr, apply(nil, newModel(*t.last, *t.ids)))
				if repaired != nil {
					repaired(found, want, err)
				}
			}
		}
		t.mu.Unlock()
	}
}

// expected is the Status a table built from n reads back as.
func expected(n normalized) Status {
	// prerouting's two jumps; per door: established, the ICMP types, the open ports, the
	// allowed sources, drop;
	// then Proxy mode's. Chains: prerouting, the doors, proxy, masquerade, the frontends'.
	return Status{Present: true, IPs: len(n.ips4) + len(n.ips6), Open: len(n.open4) + len(n.open6),
		Proxy:  len(n.proxy4) + len(n.proxy6),
		Chains: 5 + len(n.proxy4) + len(n.proxy6),
		Rules:  2 + 2*4 + len(icmp4Pass) + len(icmp6Pass) + proxyRules(n)}
}

// apply sends one batch: the whole table holding next when old is nil, else what turns
// old into next.
func apply(old, next *model) error {
	c, err := dial()
	if err != nil {
		return err
	}
	if old == nil {
		err = build(c, next)
	} else {
		err = applyDiff(c, old, next, map[string]*nftables.Set{})
	}
	if err != nil {
		return err // the batch is dropped unsent
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("datapath: apply table %s: %w", TableName, err)
	}
	return nil
}

// build queues the whole table holding m on c: added, deleted and added again (so the
// delete never fails on a missing table), then its fixed sets, chains and rules, then
// m's frontend chains and elements.
func build(c *nftables.Conn, m *model) error {
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)

	sets := map[string]*nftables.Set{}
	for _, name := range fixedSets {
		s := setDef(name)
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("datapath: set %s: %w", name, err)
		}
		sets[name] = s
	}
	ips4, ips6, open4, open6 := sets[setIPs4], sets[setIPs6], sets[setOpen4], sets[setOpen6]
	allowed4, allowed6 := sets[setAllowed4], sets[setAllowed6]

	policy := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: chainPrerouting, Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(doorPriority), Policy: &policy})
	door4 := c.AddChain(&nftables.Chain{Name: chainDoor4, Table: table})
	door6 := c.AddChain(&nftables.Chain{Name: chainDoor6, Table: table})

	// prerouting: to an LB IP → its family's door.
	c.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: concat(
		nfproto(unix.NFPROTO_IPV4),
		[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}},
		lookup(ips4, 1),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chainDoor4}})})
	c.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: concat(
		nfproto(unix.NFPROTO_IPV6),
		[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}},
		lookup(ips6, 1),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chainDoor6}})})

	// The doors: established and related traffic, ICMP that must pass, the open ports,
	// then drop.
	for _, d := range []struct {
		chain   *nftables.Chain
		icmp    byte
		types   []byte
		set     *nftables.Set
		allowed *nftables.Set
		fam     family
	}{
		{door4, unix.IPPROTO_ICMP, icmp4Pass, open4, allowed4, ipv4},
		{door6, unix.IPPROTO_ICMPV6, icmp6Pass, open6, allowed6, ipv6},
	} {
		c.AddRule(&nftables.Rule{Table: table, Chain: d.chain, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
		for _, typ := range d.types {
			c.AddRule(&nftables.Rule{Table: table, Chain: d.chain, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{d.icmp}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{typ}},
				&expr.Verdict{Kind: expr.VerdictAccept},
			}})
		}
		c.AddRule(&nftables.Rule{Table: table, Chain: d.chain, Exprs: concat(
			d.fam.frontendExprs(), lookup(d.set, 1), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})})
		c.AddRule(&nftables.Rule{Table: table, Chain: d.chain, Exprs: concat(
			d.fam.frontendExprs(), d.fam.sourceExprs(), lookup(d.allowed, 1), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})})
		c.AddRule(&nftables.Rule{Table: table, Chain: d.chain, Exprs: []expr.Any{
			&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	addProxyChains(c, sets)
	return applyDiff(c, &model{}, m, sets)
}

// family is where rules of one IP family find the addresses, and the registers of the
// keys `daddr . l4proto . dport [. saddr]` (concatenations take 32-bit registers from 8,
// written as 1 for the first 128 bits).
type family struct {
	proto          byte
	daddr, saddr   expr.Payload
	l4Reg, portReg uint32
}

var (
	ipv4 = family{unix.NFPROTO_IPV4,
		expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		expr.Payload{DestRegister: 11, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}, 9, 10}
	ipv6 = family{unix.NFPROTO_IPV6,
		expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		expr.Payload{DestRegister: 14, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16}, 12, 13}
)

// frontendExprs load `daddr . l4proto . dport`, a frontend's key.
func (f family) frontendExprs() []expr.Any {
	daddr := f.daddr
	return []expr.Any{
		&daddr,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: f.l4Reg},
		&expr.Payload{DestRegister: f.portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

// sourceExprs load saddr after a frontend's key.
func (f family) sourceExprs() []expr.Any {
	saddr := f.saddr
	return []expr.Any{&saddr}
}

func nfproto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func lookup(s *nftables.Set, reg uint32) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID}}
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// read counts what the kernel holds of berth's table.
func read() (Status, error) { return readTable(true) }

// readTable reads the table back; without elements it leaves IPs and Open at zero and
// only checks that the sets exist: dumping 20,000 elements every few seconds made
// megabytes of garbage in a speaker at 10,000 Services.
func readTable(elements bool) (Status, error) {
	c, err := dial()
	if err != nil {
		return Status{}, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return Status{}, fmt.Errorf("datapath: list tables: %w", err)
	}
	var st Status
	for _, tb := range tables {
		st.Present = st.Present || tb.Name == TableName
	}
	if !st.Present {
		return st, nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return st, fmt.Errorf("datapath: list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == TableName {
			st.Chains++
		}
	}
	if st.Rules, err = countRules(); err != nil {
		return st, err
	}
	for _, s := range []struct {
		name string
		n    *int
	}{
		{setIPs4, &st.IPs}, {setIPs6, &st.IPs}, {setOpen4, &st.Open}, {setOpen6, &st.Open},
		{mapProxy4, &st.Proxy}, {mapProxy6, &st.Proxy}, {setMasquerade4, nil}, {setMasquerade6, nil},
		{setAllowed4, nil}, {setAllowed6, nil},
	} {
		set, err := c.GetSetByName(table, s.name)
		if err != nil {
			return st, fmt.Errorf("datapath: set %s: %w", s.name, err)
		}
		if !elements || s.n == nil {
			continue
		}
		elems, err := c.GetSetElements(set)
		if err != nil {
			return st, fmt.Errorf("datapath: elements of %s: %w", s.name, err)
		}
		*s.n += len(elems)
	}
	return st, nil
}

// countRules counts the rules of berth's table in one dump: the library asks per chain,
// which at a thousand Proxy frontends is a thousand round trips.
func countRules() (int, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return 0, fmt.Errorf("datapath: netlink: %w", err)
	}
	defer conn.Close()
	if err := conn.SetReadBuffer(socketBuffer); err != nil {
		return 0, fmt.Errorf("datapath: netlink: %w", err)
	}
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: []byte(TableName + "\x00")}})
	if err != nil {
		return 0, err
	}
	// nfgenmsg: family, version, resource id.
	hdr := []byte{byte(nftables.TableFamilyINet), unix.NFNETLINK_V0, 0, 0}
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE), Flags: netlink.Request | netlink.Dump},
		Data:   append(hdr, attrs...),
	})
	if err != nil {
		return 0, fmt.Errorf("datapath: dump rules of %s: %w", TableName, err)
	}
	n := 0
	for _, m := range msgs {
		if m.Header.Type == netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWRULE) {
			n++
		}
	}
	return n, nil
}
