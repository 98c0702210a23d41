package speaker

import (
	"encoding/json"
	"net/http"
	"strings"
)

// DecisionsView is the JSON the decision endpoint serves: what this node announces, how,
// and why not for the rest, straight from memory, so it answers while the apiserver is down.
type DecisionsView struct {
	Node            string        `json:"node"`
	Generation      uint64        `json:"generation"`
	Synced          bool          `json:"synced"`
	DecisionVersion uint32        `json:"decisionVersion"`
	Members         []MemberView  `json:"members"`
	Services        []ServiceView `json:"services"`
}

// MemberView is a live memberlist member.
type MemberView struct {
	Name            string   `json:"name"`
	L2Interfaces    []string `json:"l2Interfaces,omitempty"`
	DecisionVersion uint32   `json:"decisionVersion,omitempty"`
	MACs            []string `json:"macs,omitempty"`
}

// ServiceView is one Service's decisions.
type ServiceView struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	IPs       []IPView `json:"ips"`
}

// IPView is the decision for one IP.
type IPView struct {
	IP   string  `json:"ip"`
	Pool string  `json:"pool,omitempty"`
	L2   L2View  `json:"l2"`
	BGP  BGPView `json:"bgp"`
}

// L2View is an L2 decision.
type L2View struct {
	Announce   bool     `json:"announce"`
	Reason     Reason   `json:"reason"`
	Owner      string   `json:"owner,omitempty"`
	Next       string   `json:"next,omitempty"`
	Interfaces []string `json:"interfaces,omitempty"`
}

// BGPView is a BGP decision.
type BGPView struct {
	Announce       bool     `json:"announce"`
	Reason         Reason   `json:"reason"`
	Peers          []string `json:"peers,omitempty"`
	Advertisements []string `json:"advertisements,omitempty"`
}

// View turns decisions into their JSON form; service, when not empty, keeps only the
// Service named namespace/name.
func View(d Decisions, service string) DecisionsView {
	v := DecisionsView{Node: d.Node, Generation: d.Generation, Synced: d.Synced, DecisionVersion: d.DecisionVersion,
		Members: []MemberView{}, Services: []ServiceView{}}
	for _, m := range d.Members {
		v.Members = append(v.Members, MemberView{Name: m.Name, L2Interfaces: m.L2Interfaces, DecisionVersion: m.DecisionVersion, MACs: m.MACs})
	}
	for _, sd := range d.Services {
		if service != "" && sd.Namespace+"/"+sd.Name != service {
			continue
		}
		sv := ServiceView{Namespace: sd.Namespace, Name: sd.Name, IPs: make([]IPView, 0, len(sd.IPs))}
		for _, ip := range sd.IPs {
			iv := IPView{IP: ip.IP.String(), Pool: ip.Pool,
				L2:  L2View{Announce: ip.L2.Announce, Reason: ip.L2.Reason, Owner: ip.L2.Owner, Next: ip.L2.Next, Interfaces: ip.L2.Interfaces},
				BGP: BGPView{Announce: ip.BGP.Announce, Reason: ip.BGP.Reason}}
			for _, r := range ip.BGP.Routes {
				iv.BGP.Advertisements = append(iv.BGP.Advertisements, r.Advertisement.Name)
				iv.BGP.Peers = append(iv.BGP.Peers, r.Peers...)
			}
			iv.BGP.Peers = sortedSet(iv.BGP.Peers)
			sv.IPs = append(sv.IPs, iv)
		}
		v.Services = append(v.Services, sv)
	}
	return v
}

// DecisionsHandler serves GET /decisions[?service=namespace/name] as JSON.
func DecisionsHandler(decisions func() Decisions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read-only: GET only", http.StatusMethodNotAllowed)
			return
		}
		service := strings.TrimSpace(r.URL.Query().Get("service"))
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(View(decisions(), service))
	})
}
