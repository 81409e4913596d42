package chaos

// The nemesis: a schedule of faults drawn from a seed, each followed by a heal period. The
// schedule fixes the kinds, their order and durations; whom a fault hits ("the leader", "a
// follower") is decided when it runs, from the cluster as it is then.

import (
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"syscall"
	"time"
)

type nemesisKind string

const (
	killLeader        nemesisKind = "kill-leader"        // kill -9 the leader; restart it when the fault ends
	pauseLeader       nemesisKind = "pause-leader"       // SIGSTOP the leader; SIGCONT when the fault ends
	partitionLeader   nemesisKind = "partition-leader"   // cut the leader off from both followers
	partitionMinority nemesisKind = "partition-minority" // cut one follower off from the other two
	restartAll        nemesisKind = "restart-all"        // stop every scheduler, then start them all
)

var allNemeses = []nemesisKind{killLeader, pauseLeader, partitionLeader, partitionMinority, restartAll}

// step is one fault of the schedule.
type step struct {
	Kind  nemesisKind
	Fault time.Duration // how long the fault lasts (restart-all: the downtime)
	Heal  time.Duration // quiet time after it
	// Pick chooses the follower of partition-minority (index among the followers by id).
	Pick int
	// Graceful makes restart-all stop with SIGTERM instead of kill -9.
	Graceful bool
}

func (s step) String() string {
	extra := ""
	switch s.Kind {
	case partitionMinority:
		extra = fmt.Sprintf(",follower#%d", s.Pick)
	case restartAll:
		extra = ",kill-9"
		if s.Graceful {
			extra = ",sigterm"
		}
	}
	return fmt.Sprintf("%s(%s%s)+heal(%s)", s.Kind, s.Fault, extra, s.Heal)
}

// makeSchedule draws a schedule from seed: every nemesis once in a random order, then random
// ones until the faults and heals add up to total.
func makeSchedule(seed int64, total time.Duration) []step {
	rng := rand.New(rand.NewSource(seed))
	var out []step
	var sum time.Duration
	draw := func(k nemesisKind) {
		s := step{
			Kind:     k,
			Fault:    time.Duration(30+rng.Intn(31)) * 100 * time.Millisecond, // 3s-6s
			Heal:     time.Duration(25+rng.Intn(16)) * 100 * time.Millisecond, // 2.5s-4s
			Pick:     rng.Intn(2),
			Graceful: rng.Intn(2) == 0,
		}
		if k == restartAll {
			s.Fault /= 3
		}
		out = append(out, s)
		sum += s.Fault + s.Heal
	}
	for _, i := range rng.Perm(len(allNemeses)) {
		draw(allNemeses[i])
	}
	for sum < total {
		draw(allNemeses[rng.Intn(len(allNemeses))])
	}
	return out
}

func formatSchedule(steps []step) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = s.String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// fault is what happened in one step, for the report.
type fault struct {
	step   step
	target string // scheduler ids hit
	at     int64  // recorder time the fault began
	healed int64  // recorder time it ended
}

// run applies one step: waits for a leader, injects the fault, waits, ends it, and waits out
// the heal period. It returns nil if the cluster had no leader to aim at (reported as a test
// error: the previous heal did not bring it back).
func (e *env) run(st step, rec *recorder) *fault {
	e.t.Helper()
	leader, err := e.waitLeader(30 * time.Second)
	if err != nil {
		e.t.Errorf("before %s: the cluster did not recover from the previous fault: %v", st, err)
		return nil
	}
	var followers []*scheduler
	for _, s := range e.scheds {
		if s != leader {
			followers = append(followers, s)
		}
	}
	f := &fault{step: st, target: leader.id}
	switch st.Kind {
	case killLeader:
		f.at = rec.now()
		if err := leader.proc.Kill9(); err != nil {
			e.t.Errorf("%s: %v", st.Kind, err)
		}
		time.Sleep(st.Fault)
		e.restart(leader)
	case pauseLeader:
		f.at = rec.now()
		if err := leader.proc.Signal(syscall.SIGSTOP); err != nil {
			e.t.Errorf("%s: %v", st.Kind, err)
		}
		leader.paused = true
		time.Sleep(st.Fault)
		if err := leader.proc.Signal(syscall.SIGCONT); err != nil {
			e.t.Errorf("%s: %v", st.Kind, err)
		}
		leader.paused = false
	case partitionLeader:
		f.at = rec.now()
		if err := e.net.partition([]string{leader.id}, []string{followers[0].id, followers[1].id}); err != nil {
			e.t.Errorf("%s: %v", st.Kind, err)
		}
		time.Sleep(st.Fault)
		if err := e.net.heal("s1", "s2", "s3"); err != nil {
			e.t.Errorf("%s: heal: %v", st.Kind, err)
		}
	case partitionMinority:
		lone := followers[st.Pick%len(followers)]
		var rest []string
		for _, s := range e.scheds {
			if s != lone {
				rest = append(rest, s.id)
			}
		}
		f.target = lone.id
		f.at = rec.now()
		if err := e.net.partition([]string{lone.id}, rest); err != nil {
			e.t.Errorf("%s: %v", st.Kind, err)
		}
		time.Sleep(st.Fault)
		if err := e.net.heal("s1", "s2", "s3"); err != nil {
			e.t.Errorf("%s: heal: %v", st.Kind, err)
		}
	case restartAll:
		f.target = "all"
		f.at = rec.now()
		var wg sync.WaitGroup
		for _, s := range e.scheds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if st.Graceful {
					err = e.stopGraceful(s)
				} else {
					err = s.proc.Kill9()
				}
				if err != nil {
					e.t.Errorf("%s: %v", st.Kind, err)
				}
			}()
		}
		wg.Wait()
		time.Sleep(st.Fault)
		for _, s := range e.scheds {
			e.restart(s)
		}
	}
	f.healed = rec.now()
	e.t.Logf("nemesis %s on %s: fault at %s, healed at %s", st, f.target, time.Duration(f.at), time.Duration(f.healed))
	time.Sleep(st.Heal)
	return f
}

// firstAckAfter is the time from at to the first acknowledged tag write invoked at or after
// it, or -1 if there was none.
func firstAckAfter(events []event, at int64) time.Duration {
	best := int64(-1)
	for _, ev := range events {
		if (ev.Kind == callTag || ev.Kind == callUntag) && ev.OK && ev.Call >= at && (best < 0 || ev.Return < best) {
			best = ev.Return
		}
	}
	if best < 0 {
		return -1
	}
	return time.Duration(best - at)
}
