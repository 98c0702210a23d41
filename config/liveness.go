package config

import "slices"

// DeadNodes returns the nodes a strict majority of the other nodes' memberlists do not
// see. A killed speaker's NodeAnnouncement keeps listing what it announced; once the
// survivors report it gone, its entries no longer count. Nodes without a members list
// (older speakers) neither vote nor die.
func DeadNodes(members map[string][]string) map[string]bool {
	dead := map[string]bool{}
	for node, own := range members {
		if len(own) == 0 {
			continue
		}
		voters, omit := 0, 0
		for other, seen := range members {
			if other == node || len(seen) == 0 {
				continue
			}
			voters++
			if !slices.Contains(seen, node) {
				omit++
			}
		}
		if omit > 0 && 2*omit > voters {
			dead[node] = true
		}
	}
	return dead
}
