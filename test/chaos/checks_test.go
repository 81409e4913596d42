package chaos

// Tests of the checkers themselves, on hand-written histories: they need neither root nor
// any process, and run in -short mode.

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	orchv1 "orch/proto/orch/v1"
)

func tag(client int, k, v string, call, ret int64, ok bool) event {
	return event{Client: client, Kind: callTag, Key: k, Value: v, Call: call, Return: ret, OK: ok}
}

func untag(client int, k string, call, ret int64, ok bool) event {
	return event{Client: client, Kind: callUntag, Key: k, Call: call, Return: ret, OK: ok}
}

func read(client int, tags map[string]string, call, ret int64) event {
	return event{Client: client, Kind: callRead, Tags: tags, Call: call, Return: ret, OK: true}
}

func TestLinearizabilityCheck(t *testing.T) {
	keys := []string{"a", "b"}
	for _, tc := range []struct {
		name   string
		events []event
		want   porcupine.CheckResult
		pruned int
	}{
		{"sequential", []event{tag(0, "a", "1", 0, 10, true), read(1, map[string]string{"a": "1"}, 20, 30)}, porcupine.Ok, 0},
		{"stale read", []event{
			tag(0, "a", "1", 0, 10, true), tag(0, "a", "2", 20, 30, true), read(1, map[string]string{"a": "1"}, 40, 50),
		}, porcupine.Illegal, 0},
		{"concurrent writes either order", []event{
			tag(0, "a", "1", 0, 10, true), tag(1, "a", "2", 5, 15, true),
			read(2, map[string]string{"a": "1"}, 20, 30), read(2, map[string]string{"a": "1"}, 40, 50),
		}, porcupine.Ok, 0},
		{"reads disagree on order", []event{
			tag(0, "a", "1", 0, 10, true), tag(1, "a", "2", 5, 15, true),
			read(2, map[string]string{"a": "1"}, 20, 30), read(2, map[string]string{"a": "2"}, 40, 50),
			read(2, map[string]string{"a": "1"}, 60, 70),
		}, porcupine.Illegal, 0},
		{"unknown write observed late", []event{
			tag(0, "a", "1", 0, 10, true), tag(1, "a", "2", 20, 30, false),
			read(2, map[string]string{"a": "1"}, 40, 50), read(2, map[string]string{"a": "2"}, 60, 70),
		}, porcupine.Ok, 0},
		{"unknown write never observed is left out", []event{
			tag(0, "a", "1", 0, 10, true), tag(1, "a", "2", 20, 30, false), read(2, map[string]string{"a": "1"}, 40, 50),
		}, porcupine.Ok, 1},
		{"lost acknowledged write", []event{
			tag(0, "a", "1", 0, 10, true), read(2, map[string]string{}, 40, 50),
		}, porcupine.Illegal, 0},
		{"absent explained by an unknown removal", []event{
			tag(0, "a", "1", 0, 10, true), untag(1, "a", 20, 30, false), read(2, map[string]string{}, 40, 50),
		}, porcupine.Ok, 0},
		{"unknown removal with no absent read after it is left out", []event{
			tag(0, "a", "1", 20, 30, true), untag(1, "a", 40, 45, false), read(2, map[string]string{}, 0, 10),
			read(2, map[string]string{"a": "1"}, 50, 60),
		}, porcupine.Ok, 1},
		{"definitely failed write never takes effect", []event{
			tag(0, "a", "1", 0, 10, true), {Kind: callTag, Key: "a", Value: "2", Call: 20, Return: 30, Failed: true},
			read(2, map[string]string{"a": "2"}, 40, 50),
		}, porcupine.Illegal, 0},
		{"keys are independent", []event{
			tag(0, "a", "1", 0, 10, true), tag(1, "b", "x", 0, 10, true), read(2, map[string]string{"a": "1", "b": "x"}, 20, 30),
		}, porcupine.Ok, 0},
		{"failed reads and local reads are not checked", []event{
			tag(0, "a", "1", 0, 10, true),
			{Kind: callRead, Tags: map[string]string{"a": "0"}, Call: 20, Return: 30, OK: false},
			{Kind: callReadLocal, Tags: map[string]string{}, Call: 20, Return: 30, OK: true},
		}, porcupine.Ok, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, pruned := operations(tc.events, keys, -1)
			if got := porcupine.CheckOperationsTimeout(kvModel, ops, 10*time.Second); got != tc.want {
				t.Errorf("check: %s, want %s", got, tc.want)
			}
			if pruned != tc.pruned {
				t.Errorf("pruned %d, want %d", pruned, tc.pruned)
			}
		})
	}
}

// TestUnknownRemovalsLimit: of the unknown-outcome removals of a key, only the earliest are
// kept under a limit; a history that needs two of them is linearizable with limit 2, not 1.
func TestUnknownRemovalsLimit(t *testing.T) {
	events := []event{
		untag(1, "a", 0, 1, false), untag(1, "a", 2, 3, false), untag(1, "a", 4, 5, false),
		tag(0, "a", "1", 10, 20, true), read(2, map[string]string{}, 30, 40),
		tag(0, "a", "2", 50, 60, true), read(2, map[string]string{}, 70, 80),
	}
	for _, tc := range []struct {
		limit  int
		want   porcupine.CheckResult
		pruned int
	}{{0, porcupine.Illegal, 3}, {1, porcupine.Illegal, 2}, {2, porcupine.Ok, 1}, {-1, porcupine.Ok, 0}} {
		ops, pruned := operations(events, []string{"a"}, tc.limit)
		if got := porcupine.CheckOperationsTimeout(kvModel, ops, 10*time.Second); got != tc.want || pruned != tc.pruned {
			t.Errorf("limit %d: %s with %d left out, want %s with %d", tc.limit, got, pruned, tc.want, tc.pruned)
		}
	}
}

func TestCheckAckedWrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		events  []event
		final   map[string]string
		wantErr string // substring; "" for none
	}{
		{"last write present", []event{tag(0, "a", "1", 0, 10, true), tag(0, "a", "2", 20, 30, true)}, map[string]string{"a": "2"}, ""},
		{"overwritten write present", []event{tag(0, "a", "1", 0, 10, true), tag(0, "a", "2", 20, 30, true)}, map[string]string{"a": "1"}, "is lost"},
		{"concurrent writes either", []event{tag(0, "a", "1", 0, 10, true), tag(1, "a", "2", 5, 30, true)}, map[string]string{"a": "1"}, ""},
		{"later unknown write", []event{tag(0, "a", "1", 0, 10, true), tag(1, "a", "2", 20, 30, false)}, map[string]string{"a": "2"}, ""},
		{"earlier unknown write applied late", []event{tag(1, "a", "2", 0, 5, false), tag(0, "a", "1", 10, 20, true)}, map[string]string{"a": "2"}, ""},
		{"never written", []event{tag(0, "a", "1", 0, 10, true)}, map[string]string{"a": "9"}, "never written"},
		{"absent after acknowledged write", []event{tag(0, "a", "1", 0, 10, true)}, map[string]string{}, "acknowledged writes lost"},
		{"absent after removal", []event{tag(0, "a", "1", 0, 10, true), untag(0, "a", 20, 30, true)}, map[string]string{}, ""},
		{"absent after overwritten removal", []event{untag(0, "a", 0, 10, true), tag(0, "a", "1", 20, 30, true)}, map[string]string{}, "acknowledged writes lost"},
		{"untouched key", nil, map[string]string{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := checkAckedWrites(tc.events, tc.final, []string{"a"})
			switch {
			case tc.wantErr == "" && len(errs) > 0:
				t.Errorf("unexpected errors: %v", errs)
			case tc.wantErr != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.wantErr)):
				t.Errorf("errors %v, want one containing %q", errs, tc.wantErr)
			}
		})
	}
}

func TestCheckTasks(t *testing.T) {
	at := func(s int) *timestamppb.Timestamp { return timestamppb.New(time.Unix(1700000000+int64(s), 0)) }
	task := func(id, ip, status string, created, stopped int, held bool, startedBy string) *orchv1.Task {
		tk := &orchv1.Task{Id: id, LastStatus: status, ContainerInstanceArn: "ci", CreatedAt: at(created),
			Eni: &orchv1.Eni{Ip: ip}, EniHeld: held, StartedBy: startedBy}
		if status == "STOPPED" {
			tk.StoppedAt = at(stopped)
		}
		return tk
	}
	run := func(id, ip, startedBy string) event {
		return event{Kind: callRunTask, OK: true, TaskID: id, IP: ip, StartedBy: startedBy}
	}
	for _, tc := range []struct {
		name    string
		events  []event
		listed  []string
		tasks   []*orchv1.Task
		wantErr string
	}{
		{"fine", []event{run("t1", "10.0.0.2", "r1"), run("t2", "10.0.0.3", "r2")}, []string{"t1", "t2"},
			[]*orchv1.Task{task("t1", "10.0.0.2", "RUNNING", 1, 0, false, "r1"), task("t2", "10.0.0.3", "PENDING", 2, 0, false, "r2")}, ""},
		{"address reused after stop", nil, []string{"t1", "t2"},
			[]*orchv1.Task{task("t1", "10.0.0.2", "STOPPED", 1, 5, false, "r1"), task("t2", "10.0.0.2", "RUNNING", 6, 0, false, "r2")}, ""},
		{"address held twice", nil, []string{"t1", "t2"},
			[]*orchv1.Task{task("t1", "10.0.0.2", "RUNNING", 1, 0, false, "r1"), task("t2", "10.0.0.2", "RUNNING", 6, 0, false, "r2")}, "held by 2 tasks"},
		{"address of a lost task still held", nil, []string{"t1", "t2"},
			[]*orchv1.Task{task("t1", "10.0.0.2", "STOPPED", 1, 3, true, "r1"), task("t2", "10.0.0.2", "RUNNING", 6, 0, false, "r2")}, "held by 2 tasks"},
		{"address given before the stop", nil, []string{"t1", "t2"},
			[]*orchv1.Task{task("t1", "10.0.0.2", "STOPPED", 1, 9, false, "r1"), task("t2", "10.0.0.2", "STOPPED", 6, 10, false, "r2")}, "still had it"},
		{"listed twice", nil, []string{"t1", "t1"}, []*orchv1.Task{task("t1", "10.0.0.2", "RUNNING", 1, 0, false, "r1")}, "listed twice"},
		{"acknowledged task missing", []event{run("t9", "10.0.0.9", "r9")}, nil, nil, "does not exist"},
		{"acknowledged id twice", []event{run("t1", "10.0.0.2", "r1"), run("t1", "10.0.0.2", "r2")}, []string{"t1"},
			[]*orchv1.Task{task("t1", "10.0.0.2", "RUNNING", 1, 0, false, "r1")}, "returned by two run-tasks"},
		{"one run-task made two tasks", nil, []string{"t1", "t2"},
			[]*orchv1.Task{task("t1", "10.0.0.2", "RUNNING", 1, 0, false, "r1"), task("t2", "10.0.0.3", "RUNNING", 1, 0, false, "r1")}, "made 2 tasks"},
		{"failed run-task made a task", []event{{Kind: callRunTask, Failed: true, StartedBy: "r1"}}, []string{"t1"},
			[]*orchv1.Task{task("t1", "10.0.0.2", "RUNNING", 1, 0, false, "r1")}, "the call failed"},
		{"address changed", []event{run("t1", "10.0.0.2", "r1")}, []string{"t1"},
			[]*orchv1.Task{task("t1", "10.0.0.7", "RUNNING", 1, 0, false, "r1")}, "has address 10.0.0.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := checkTasks(tc.events, tc.listed, tc.tasks)
			switch {
			case tc.wantErr == "" && len(errs) > 0:
				t.Errorf("unexpected errors: %v", errs)
			case tc.wantErr != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.wantErr)):
				t.Errorf("errors %v, want one containing %q", errs, tc.wantErr)
			}
		})
	}
}

func TestNotApplied(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 10.211.1.2:7400: connect: connection refused"`), true},
		{status.Error(codes.Unavailable, "no leader elected yet; retry"), true},
		{status.Error(codes.Unavailable, "leader s1 has not published its API address yet; retry"), true},
		{status.Error(codes.Unavailable, "scheduler s2 is not the leader (forwarded call); retry"), true},
		{status.Error(codes.Unavailable, "not the leader: leadership lost while committing log"), false},
		{status.Error(codes.Unavailable, `closing transport due to: connection error: desc = "error reading from server: EOF"`), false},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), false},
		{errors.New("no leader elected yet"), false},
	} {
		if got := notApplied(tc.err); got != tc.want {
			t.Errorf("notApplied(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestMakeSchedule(t *testing.T) {
	a, b := makeSchedule(42, 40*time.Second), makeSchedule(42, 40*time.Second)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different schedules:\n%s\n%s", formatSchedule(a), formatSchedule(b))
	}
	seen := map[nemesisKind]bool{}
	var sum time.Duration
	for _, s := range a {
		seen[s.Kind] = true
		sum += s.Fault + s.Heal
	}
	if len(seen) != len(allNemeses) {
		t.Errorf("schedule %s lacks some nemeses", formatSchedule(a))
	}
	if sum < 40*time.Second {
		t.Errorf("schedule %s lasts %s, want at least 40s", formatSchedule(a), sum)
	}
	if long := makeSchedule(42, 5*time.Minute); len(long) <= len(a) {
		t.Errorf("a 5m schedule has %d steps, the 40s one %d", len(long), len(a))
	}
}
