package eni

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// The nftables layout, in the host netns (`nft list table ip orch`):
//
//	table ip orch {
//	  chain forward {      # filter hook forward priority 0; policy accept
//	    iifname "orchA" oifname "orch*" oifname != "orchA" counter drop  comment "orch:orchA:isolate"
//	  }
//	  chain postrouting {  # nat hook postrouting priority srcnat; policy accept
//	    ip saddr 10.64.0.0/16 oifname != "orch*" counter masquerade   comment "orch:orchA:masq:10.64.0.0/16"
//	  }
//	}
//
// One table holds every bridge's rules; each rule's comment (NFTA_RULE_USERDATA, as `nft`
// writes it) names its bridge, so DeleteBridge removes exactly that bridge's rules and
// EnsureBridge can tell whether they are already in place. Same-bridge traffic is never
// dropped: it is switched by the bridge, and even where br_netfilter passes it through the
// forward hook, its output interface is the bridge itself.
const (
	tableName     = "orch"
	forwardChain  = "forward"
	postrouteName = "postrouting"
)

var orchTable = &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}

func (m *Manager) nftConn() (*nftables.Conn, error) {
	return nftables.New(nftables.WithNetNSFd(int(m.hostNS)))
}

func chains() (fwd, post *nftables.Chain) {
	accept := nftables.ChainPolicyAccept
	fwd = &nftables.Chain{
		Name:     forwardChain,
		Table:    orchTable,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookForward,
		Priority: nftables.ChainPriorityFilter,
		Policy:   &accept,
	}
	post = &nftables.Chain{
		Name:     postrouteName,
		Table:    orchTable,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
		Policy:   &accept,
	}
	return fwd, post
}

// ensureRules installs bridge's two rules unless exactly they are already there; stale ones
// (another cluster CIDR, duplicates) are replaced in the same atomic batch.
func (m *Manager) ensureRules(bridge string, cluster *net.IPNet) error {
	c, err := m.nftConn()
	if err != nil {
		return err
	}
	fwd, post := chains()
	c.AddTable(orchTable) // NLM_F_CREATE without EXCL: a no-op when it exists
	c.AddChain(fwd)
	c.AddChain(post)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("create table ip %s: %w", tableName, err)
	}

	isolate := isolateRule(fwd, bridge)
	masq := masqRule(post, bridge, cluster)
	want := []string{ruleComment(isolate), ruleComment(masq)}
	have, err := bridgeRules(c, bridge)
	if err != nil {
		return err
	}
	var haveComments []string
	for _, r := range have {
		haveComments = append(haveComments, ruleComment(r))
	}
	slices.Sort(want)
	slices.Sort(haveComments)
	if slices.Equal(want, haveComments) {
		return nil
	}
	for _, r := range have {
		if err := c.DelRule(r); err != nil {
			return err
		}
	}
	c.AddRule(isolate)
	c.AddRule(masq)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install rules: %w", err)
	}
	return nil
}

// deleteRules removes bridge's rules, and the table when no other bridge has rules in it.
func (m *Manager) deleteRules(bridge string) error {
	c, err := m.nftConn()
	if err != nil {
		return err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == tableName }) {
		return nil
	}
	all, err := allRules(c)
	if err != nil {
		return err
	}
	var mine []*nftables.Rule
	for _, r := range all {
		if ruleBridge(r) == bridge {
			mine = append(mine, r)
		}
	}
	if len(mine) == len(all) {
		c.DelTable(orchTable)
	} else {
		for _, r := range mine {
			if err := c.DelRule(r); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete rules: %w", err)
	}
	return nil
}

func allRules(c *nftables.Conn) ([]*nftables.Rule, error) {
	fwd, post := chains()
	var all []*nftables.Rule
	for _, ch := range []*nftables.Chain{fwd, post} {
		rs, err := c.GetRules(orchTable, ch)
		if err != nil {
			return nil, fmt.Errorf("list chain %s: %w", ch.Name, err)
		}
		all = append(all, rs...)
	}
	return all, nil
}

func bridgeRules(c *nftables.Conn, bridge string) ([]*nftables.Rule, error) {
	all, err := allRules(c)
	if err != nil {
		return nil, err
	}
	var mine []*nftables.Rule
	for _, r := range all {
		if ruleBridge(r) == bridge {
			mine = append(mine, r)
		}
	}
	return mine, nil
}

// isolateRule: iifname bridge oifname "orch*" oifname != bridge counter drop.
func isolateRule(fwd *nftables.Chain, bridge string) *nftables.Rule {
	return &nftables.Rule{
		Table: orchTable,
		Chain: fwd,
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(bridge)},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			// A cmp shorter than the register compares a prefix: oifname "orch*".
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(BridgePrefix)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(bridge)},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		},
		UserData: userdata.AppendString(nil, userdata.TypeComment, "orch:"+bridge+":isolate"),
	}
}

// masqRule: ip saddr cluster oifname != "orch*" counter masquerade.
func masqRule(post *nftables.Chain, bridge string, cluster *net.IPNet) *nftables.Rule {
	mask := []byte(cluster.Mask)
	if len(mask) == net.IPv6len {
		mask = mask[12:]
	}
	return &nftables.Rule{
		Table: orchTable,
		Chain: post,
		Exprs: []expr.Any{
			// ip saddr: 4 bytes at offset 12 of the IPv4 header, masked, compared.
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: cluster.IP.To4()},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(BridgePrefix)},
			&expr.Counter{},
			&expr.Masq{},
		},
		UserData: userdata.AppendString(nil, userdata.TypeComment,
			"orch:"+bridge+":masq:"+cluster.String()),
	}
}

// ifname is an interface name as the kernel's meta iifname/oifname loads it: NUL-padded to
// IFNAMSIZ, so that the comparison is exact rather than a prefix match.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// ruleComment returns the rule's comment, or "" if it has none. The TLV walk is bounds-checked
// (userdata.Get is not) because the table may hold rules someone added by hand.
func ruleComment(r *nftables.Rule) string {
	ud := r.UserData
	for len(ud) >= 2 {
		typ, n := userdata.Type(ud[0]), int(ud[1])
		if len(ud) < 2+n {
			return ""
		}
		if typ == userdata.TypeComment {
			return strings.TrimRight(string(ud[2:2+n]), "\x00")
		}
		ud = ud[2+n:]
	}
	return ""
}

// ruleBridge returns the bridge an orch rule belongs to ("" for foreign rules).
func ruleBridge(r *nftables.Rule) string {
	parts := strings.SplitN(ruleComment(r), ":", 3)
	if len(parts) < 3 || parts[0] != "orch" {
		return ""
	}
	return parts[1]
}
