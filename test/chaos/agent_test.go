package chaos

import (
	"regexp"
	"testing"
	"time"

	"orch/test/harness"
)

// sessionOpen is the agent's log line for a new scheduler session.
var sessionOpen = regexp.MustCompile(`msg="scheduler session open" endpoint=(\S+)`)

// TestAgentFollowsLeader cuts the leader that holds the agent's session off from the other
// schedulers (the agent still reaches all three) and heals the partition: the agent must end
// up with a session on the new leader, which must see its container instance connected once
// the grace it gives every host after its election has passed. No task runs, so the agent has
// nothing to report but heartbeats.
func TestAgentFollowsLeader(t *testing.T) {
	harness.RequireRoot(t)
	if testing.Short() {
		t.Skip("skipping the chaos suite in -short mode")
	}
	e := newEnv(t)
	leader, err := e.waitLeader(setupTimeout)
	if err != nil {
		t.Fatal(err)
	}
	m := sessionOpen.FindAllStringSubmatch(e.agent.Log(), -1)
	if len(m) == 0 || m[len(m)-1][1] != leader.addr() {
		t.Fatalf("the agent's last session is not on the leader %s (%s):\n%s", leader.id, leader.addr(), e.agent.Log())
	}
	var others []string
	for _, s := range e.scheds {
		if s != leader {
			others = append(others, s.id)
		}
	}
	if err := e.net.partition([]string{leader.id}, others); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	if err := e.net.heal("s1", "s2", "s3"); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	next, err := e.waitLeader(setupTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("partitioned leader %s for 4s; leader now %s", leader.id, next.id)
	// The new leader was elected during the partition, so its grace has ended by now + grace.
	time.Sleep(time.Until(healed.Add(heartbeatGrace + 2*time.Second)))
	if err := e.waitInstance(10 * time.Second); err != nil {
		m := sessionOpen.FindAllStringSubmatch(e.agent.Log(), -1)
		on := m[len(m)-1][1]
		for _, s := range e.scheds {
			if s.addr() == on {
				on = s.id
			}
		}
		t.Errorf("%s after the partition healed: %v; the agent's session is still the one it opened on %s before the partition",
			time.Since(healed).Round(time.Second), err, on)
	}
}
