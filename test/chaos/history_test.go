package chaos

// The recorded history and what is checked on it: a key-value model of the chaos cluster's
// tags for porcupine (partitioned by key), the translation of recorded calls into porcupine
// operations, and the checks that do not need a model: acknowledged writes are present,
// task ids are unique, no address is handed out twice.

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orchv1 "orch/proto/orch/v1"
)

// Kinds of recorded calls.
const (
	callTag       = "tag"        // TagResource key=value
	callUntag     = "untag"      // UntagResource key
	callRead      = "read"       // ListTagsForResource consistent=true: linearizable
	callReadLocal = "read-local" // ListTagsForResource from the server's own state: may be stale
	callRunTask   = "run-task"
	callStopTask  = "stop-task"
)

// event is one recorded call: when it was invoked and when it returned (nanoseconds since the
// recorder started, monotonic), and what it returned. A call that failed or timed out has
// OK false: its outcome is unknown (a write may or may not have been applied), unless Failed
// says that the error proves it was not applied (see notApplied).
type event struct {
	Client       int
	Kind, Server string
	Key, Value   string            // tag, untag
	Tags         map[string]string // reads: what was returned
	Call, Return int64
	OK, Failed   bool
	Err          string
	// run-task and stop-task
	StartedBy, TaskID, IP string
}

func (ev event) String() string {
	s := fmt.Sprintf("client %d %s via %s", ev.Client, ev.Kind, ev.Server)
	switch ev.Kind {
	case callTag:
		s += fmt.Sprintf(" %s=%s", ev.Key, ev.Value)
	case callUntag:
		s += " " + ev.Key
	case callRunTask, callStopTask:
		s += fmt.Sprintf(" startedBy=%s task=%s ip=%s", ev.StartedBy, ev.TaskID, ev.IP)
	}
	s += fmt.Sprintf(" [%s, %s]", time.Duration(ev.Call), time.Duration(ev.Return))
	switch {
	case ev.Failed:
		s += " failed: " + ev.Err
	case !ev.OK:
		s += " unknown outcome: " + ev.Err
	case ev.Err != "":
		s += " " + ev.Err
	}
	return s
}

// recorder collects events from concurrent clients.
type recorder struct {
	start  time.Time
	mu     sync.Mutex
	events []event
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

// now is the time since the recorder started, from the monotonic clock.
func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(ev event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) all() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// The porcupine model: one register per tag key, present with a value or absent.
type (
	kvInput struct {
		Kind, Key, Value string // Kind: callTag, callUntag or callRead
	}
	kvValue struct {
		Present bool
		Value   string
	}
)

func (v kvValue) String() string {
	if !v.Present {
		return "absent"
	}
	return fmt.Sprintf("%q", v.Value)
}

var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).Key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range slices.Sorted(maps.Keys(byKey)) {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return kvValue{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(kvInput)
		switch in.Kind {
		case callTag:
			return true, kvValue{Present: true, Value: in.Value}
		case callUntag:
			return true, kvValue{}
		default:
			return output.(kvValue) == state.(kvValue), state
		}
	},
	DescribeOperation: func(input, output interface{}) string {
		in := input.(kvInput)
		switch in.Kind {
		case callTag:
			return fmt.Sprintf("tag %s=%s", in.Key, in.Value)
		case callUntag:
			return fmt.Sprintf("untag %s", in.Key)
		default:
			return fmt.Sprintf("read %s -> %v", in.Key, output)
		}
	},
	DescribeState: func(state interface{}) string { return state.(kvValue).String() },
}

// operations turns the recorded tag calls into porcupine operations over keys. A consistent
// read becomes one read per key, all with the read's interval (checking each key on its own is
// weaker than checking the snapshot, never stronger). Local reads may be stale and are left
// out; failed reads changed nothing and are left out, as are writes that definitely failed.
//
// A write with an unknown outcome may take effect at any time after its call: it gets a return
// time after everything else. Such a write that cannot have been observed (a value no read
// returned; a removal after which no read found the key absent) is left out, which is
// equivalent: it can always take effect last. Of the unknown removals of a key, only the
// maxUntags earliest are kept (all with -1). Leaving unknown writes out can only turn a
// linearizable history into one that is not, never the reverse; and removals are
// interchangeable but for their call times, so if any k of them are needed, the k earliest
// serve. checkLinearizable therefore tries small limits first and the full history last.
func operations(events []event, keys []string, maxUntags int) (ops []porcupine.Operation, pruned int) {
	observed := map[string]map[string]bool{} // key -> values reads returned
	var absentAt = map[string][]int64{}      // key -> return times of reads that found it absent
	var end int64
	for _, ev := range events {
		end = max(end, ev.Call, ev.Return)
		if ev.Kind != callRead || !ev.OK {
			continue
		}
		for _, k := range keys {
			if v, ok := ev.Tags[k]; ok {
				if observed[k] == nil {
					observed[k] = map[string]bool{}
				}
				observed[k][v] = true
			} else {
				absentAt[k] = append(absentAt[k], ev.Return)
			}
		}
	}
	never := end + 1
	untags := map[string]int{} // key -> unknown removals kept
	for _, ev := range sortedByCall(events) {
		if ev.Failed {
			continue
		}
		switch ev.Kind {
		case callTag, callUntag:
			ret := ev.Return
			if !ev.OK {
				if ev.Kind == callTag && !observed[ev.Key][ev.Value] ||
					ev.Kind == callUntag && !slices.ContainsFunc(absentAt[ev.Key], func(r int64) bool { return r >= ev.Call }) {
					pruned++
					continue
				}
				if ev.Kind == callUntag {
					if maxUntags >= 0 && untags[ev.Key] >= maxUntags {
						pruned++
						continue
					}
					untags[ev.Key]++
				}
				ret = never
			}
			ops = append(ops, porcupine.Operation{ClientId: ev.Client, Input: kvInput{Kind: ev.Kind, Key: ev.Key, Value: ev.Value},
				Call: ev.Call, Return: ret, Metadata: ev.Server})
		case callRead:
			if !ev.OK {
				continue
			}
			for _, k := range keys {
				v, ok := ev.Tags[k]
				ops = append(ops, porcupine.Operation{ClientId: ev.Client, Input: kvInput{Kind: callRead, Key: k},
					Output: kvValue{Present: ok, Value: v}, Call: ev.Call, Return: ev.Return, Metadata: ev.Server})
			}
		}
	}
	return ops, pruned
}

// sortedByCall returns the events in the order they were invoked.
func sortedByCall(events []event) []event {
	out := slices.Clone(events)
	slices.SortStableFunc(out, func(a, b event) int { return cmp.Compare(a.Call, b.Call) })
	return out
}

// notApplied reports whether a call's error proves that it was not applied: the call never
// left the client (the connection could not be made), or a scheduler refused it before
// handing it to Raft (no leader known to forward to, or a forwarded call that reached a
// server that does not lead; scheduler/server/forward.go). Any other error, a timeout in
// particular, leaves the outcome unknown.
func notApplied(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	for _, m := range []string{
		"transport: Error while dialing",
		"no leader elected yet",
		"has not published its API address yet",
		"is not the leader (forwarded call)",
	} {
		if strings.Contains(st.Message(), m) {
			return true
		}
	}
	return false
}

// checkAckedWrites checks the final state of each key against the writes: the final value must
// come from a write, and not from an acknowledged write that another acknowledged write of the
// key followed (began after it returned): that later write would be lost. A key may be absent
// only if no acknowledged write was made to it, or a removal may have come last.
func checkAckedWrites(events []event, final map[string]string, keys []string) []error {
	var errs []error
	for _, k := range keys {
		var writes, acked []event
		for _, ev := range events {
			if (ev.Kind == callTag || ev.Kind == callUntag) && ev.Key == k && !ev.Failed {
				writes = append(writes, ev)
				if ev.OK {
					acked = append(acked, ev)
				}
			}
		}
		// followedBy returns an acknowledged write of k that began after w returned.
		followedBy := func(w event) (event, bool) {
			for _, a := range acked {
				if a.Call > w.Return {
					return a, true
				}
			}
			return event{}, false
		}
		v, present := final[k]
		if present {
			i := slices.IndexFunc(writes, func(w event) bool { return w.Kind == callTag && w.Value == v })
			if i < 0 {
				errs = append(errs, fmt.Errorf("key %s: final value %q was never written", k, v))
				continue
			}
			if w := writes[i]; w.OK {
				if later, ok := followedBy(w); ok {
					errs = append(errs, fmt.Errorf("key %s: final value %q is from %v, but the acknowledged %v began after it returned and is lost", k, v, w, later))
				}
			}
			continue
		}
		if len(acked) == 0 {
			continue
		}
		explained := slices.ContainsFunc(writes, func(w event) bool {
			if w.Kind != callUntag {
				return false
			}
			_, followed := followedBy(w)
			return !w.OK || !followed
		})
		if !explained {
			var last []string
			for _, a := range acked {
				if _, followed := followedBy(a); !followed {
					last = append(last, a.String())
				}
			}
			errs = append(errs, fmt.Errorf("key %s: absent at the end, but no removal can have come last; acknowledged writes lost: %s", k, strings.Join(last, "; ")))
		}
	}
	return errs
}

// taskIP is the ENI address of a task.
func taskIP(t *orchv1.Task) string {
	if ip := t.GetEni().GetIp(); ip != "" {
		return ip
	}
	for _, a := range t.GetAttachments() {
		for _, d := range a.GetDetails() {
			if d.GetName() == "privateIPv4Address" {
				return d.GetValue()
			}
		}
	}
	return ""
}

// taskIDOf is a task's id, from its id or its ARN.
func taskIDOf(t *orchv1.Task) string {
	if t.GetId() != "" {
		return t.GetId()
	}
	return t.GetTaskArn()[strings.LastIndex(t.GetTaskArn(), "/")+1:]
}

// checkTasks checks the tasks the cluster lists at the end (listed: ids as ListTasks returned
// them, RUNNING and STOPPED lists together; tasks: their descriptions) against the recorded
// run-task calls:
//   - no task id is listed twice, and no two acknowledged run-tasks returned the same id;
//   - every acknowledged run-task's task exists, with the address it was given;
//   - no run-task made more than one task (each call has its own startedBy), and one that
//     failed (definitely, see notApplied) made none;
//   - no two tasks that hold an address (not STOPPED, or STOPPED with the address still held
//     for a lost host) share it on one container instance, and of two tasks that had the same
//     address, the first had stopped before the second was created.
func checkTasks(events []event, listed []string, tasks []*orchv1.Task) []error {
	var errs []error
	seen := map[string]bool{}
	for _, id := range listed {
		if seen[id] {
			errs = append(errs, fmt.Errorf("task %s is listed twice", id))
		}
		seen[id] = true
	}
	byID := map[string]*orchv1.Task{}
	byStartedBy := map[string][]string{}
	for _, t := range tasks {
		id := taskIDOf(t)
		if byID[id] != nil {
			errs = append(errs, fmt.Errorf("task %s is described twice", id))
		}
		byID[id] = t
		if sb := t.GetStartedBy(); sb != "" {
			byStartedBy[sb] = append(byStartedBy[sb], id)
		}
	}
	for sb, ids := range byStartedBy {
		if len(ids) > 1 {
			errs = append(errs, fmt.Errorf("one run-task (startedBy %s, count 1) made %d tasks: %v", sb, len(ids), ids))
		}
	}
	ackedBy := map[string]event{}
	for _, ev := range events {
		if ev.Kind == callRunTask && ev.Failed && len(byStartedBy[ev.StartedBy]) > 0 {
			errs = append(errs, fmt.Errorf("%v: the call failed, yet it made task %v", ev, byStartedBy[ev.StartedBy]))
		}
		if ev.Kind != callRunTask || !ev.OK || ev.TaskID == "" {
			continue
		}
		if prev, dup := ackedBy[ev.TaskID]; dup {
			errs = append(errs, fmt.Errorf("task id %s returned by two run-tasks: %v and %v", ev.TaskID, prev, ev))
		}
		ackedBy[ev.TaskID] = ev
		t := byID[ev.TaskID]
		switch {
		case t == nil:
			errs = append(errs, fmt.Errorf("acknowledged %v: the task does not exist at the end", ev))
		case taskIP(t) != ev.IP:
			errs = append(errs, fmt.Errorf("acknowledged %v: the task has address %s at the end", ev, taskIP(t)))
		}
	}
	type slot struct{ instance, ip string }
	byAddr := map[slot][]*orchv1.Task{}
	for _, t := range tasks {
		if ip := taskIP(t); ip != "" {
			s := slot{t.GetContainerInstanceArn(), ip}
			byAddr[s] = append(byAddr[s], t)
		}
	}
	for s, ts := range byAddr {
		if len(ts) < 2 {
			continue
		}
		var holders []string
		for _, t := range ts {
			if t.GetLastStatus() != "STOPPED" || t.GetEniHeld() {
				holders = append(holders, fmt.Sprintf("%s (%s, held %v)", taskIDOf(t), t.GetLastStatus(), t.GetEniHeld()))
			}
		}
		if len(holders) > 1 {
			errs = append(errs, fmt.Errorf("address %s on %s is held by %d tasks at once: %v", s.ip, s.instance, len(holders), holders))
			continue
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i].GetCreatedAt().AsTime().Before(ts[j].GetCreatedAt().AsTime()) })
		for i := 1; i < len(ts); i++ {
			a, b := ts[i-1], ts[i]
			if a.GetLastStatus() != "STOPPED" || a.GetStoppedAt() == nil || a.GetStoppedAt().AsTime().After(b.GetCreatedAt().AsTime()) {
				stopped := "never"
				if a.GetStoppedAt() != nil {
					stopped = a.GetStoppedAt().AsTime().Format(time.RFC3339Nano)
				}
				errs = append(errs, fmt.Errorf("address %s on %s given to task %s (created %s) while task %s (%s, stopped at %s) still had it",
					s.ip, s.instance, taskIDOf(b), b.GetCreatedAt().AsTime().Format(time.RFC3339Nano), taskIDOf(a), a.GetLastStatus(), stopped))
			}
		}
	}
	return errs
}
