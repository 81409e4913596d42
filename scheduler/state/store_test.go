package state

import (
	"bytes"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

func TestHostWatch(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.HostWatch("h1"), s.HostWatch("h2")
	w := s.Write(1)
	if err := w.PutTask(&orchv1.Task{Id: "t1", HostId: "h1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a:
		t.Fatal("fired before commit")
	default:
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a:
	default:
		t.Fatal("h1's watch did not fire on a change of its task")
	}
	select {
	case <-b:
		t.Fatal("h2's watch fired on another host's change")
	default:
	}
	other, err := New()
	if err != nil {
		t.Fatal(err)
	}
	s.Replace(other)
	select {
	case <-b:
	default:
		t.Fatal("a restore must wake every host watcher")
	}
}

func TestTrackHosts(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	c := s.TrackHosts()
	put := func(index uint64, commit bool, tasks ...*orchv1.Task) {
		t.Helper()
		putTasks(t, s, index, commit, tasks...)
	}
	tests := []struct {
		name    string
		change  func()
		want    string
		wantAll bool
	}{
		{name: "nothing", change: func() {}, want: ""},
		{name: "one commit", change: func() { put(1, true, &orchv1.Task{Id: "t1", HostId: "h1"}) }, want: "h1"},
		{name: "two commits add up", change: func() {
			put(2, true, &orchv1.Task{Id: "t2", HostId: "h2"})
			put(3, true, &orchv1.Task{Id: "t3", HostId: "h3"}, &orchv1.Task{Id: "t4", HostId: "h2"})
		}, want: "h2,h3"},
		{name: "an aborted write is no change", change: func() { put(4, false, &orchv1.Task{Id: "t5", HostId: "h5"}) }, want: ""},
		{name: "a restore changes everything", change: func() {
			other, err := New()
			if err != nil {
				t.Fatal(err)
			}
			s.Replace(other)
		}, want: "", wantAll: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.change()
			hosts, all := c.Take()
			var got []string
			for h := range hosts {
				got = append(got, h)
			}
			sort.Strings(got)
			if strings.Join(got, ",") != tt.want || all != tt.wantAll {
				t.Fatalf("Take = %v, %v; want %s, %v", got, all, tt.want, tt.wantAll)
			}
		})
	}
}

// TestWriteTxnTask: a write transaction's Task sees its own writes and deletes, in order, and
// the committed state for the rest; what it wrote shows to others only once committed.
func TestWriteTxnTask(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	w := s.Write(1)
	for _, tk := range []*orchv1.Task{{Id: "t1", HostId: "h1", LastStatus: "PENDING"}, {Id: "t2", HostId: "h1", LastStatus: "PENDING"}} {
		if err := w.PutTask(tk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	w = s.Write(2)
	status := func(id string) string { t.Helper(); return writeTxnStatus(t, w, id) }
	steps := []struct {
		name   string
		change func() error
		id     string
		want   string
	}{
		{"committed before", nil, "t1", "PENDING"},
		{"never written", nil, "t9", "absent"},
		{"replaced", func() error { return w.PutTask(&orchv1.Task{Id: "t1", HostId: "h1", LastStatus: "RUNNING"}) }, "t1", "RUNNING"},
		{"replaced twice", func() error { return w.PutTask(&orchv1.Task{Id: "t1", HostId: "h1", LastStatus: "STOPPED"}) }, "t1", "STOPPED"},
		{"inserted", func() error { return w.PutTask(&orchv1.Task{Id: "t3", HostId: "h2", LastStatus: "PENDING"}) }, "t3", "PENDING"},
		{"deleted", func() error { return w.DeleteTask(&orchv1.Task{Id: "t2", HostId: "h1"}) }, "t2", "absent"},
		{"inserted again after its delete", func() error { return w.PutTask(&orchv1.Task{Id: "t2", HostId: "h1", LastStatus: "RUNNING"}) }, "t2", "RUNNING"},
	}
	for _, st := range steps {
		if st.change != nil {
			if err := st.change(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		if got := status(st.id); got != st.want {
			t.Fatalf("%s: Task(%s) = %s, want %s", st.name, st.id, got, st.want)
		}
		if tk, _ := s.Read().Task(nil, "t1"); tk.GetLastStatus() != "PENDING" {
			t.Fatalf("%s: uncommitted write visible to readers: t1 %s", st.name, tk.GetLastStatus())
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	r := s.Read()
	for id, want := range map[string]string{"t1": "STOPPED", "t2": "RUNNING", "t3": "PENDING"} {
		if tk, _ := r.Task(nil, id); tk.GetLastStatus() != want {
			t.Fatalf("after commit: %s is %s, want %s", id, tk.GetLastStatus(), want)
		}
	}
}

// TestWriteTxnTaskAfterAbortAndRestore: an aborted write leaves no trace for the next one, and
// after a restore the next write reads the restored tasks, not the replaced ones.
func TestWriteTxnTaskAfterAbortAndRestore(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	put := func(index uint64, commit bool, tasks ...*orchv1.Task) {
		t.Helper()
		putTasks(t, s, index, commit, tasks...)
	}
	status := func(id string) string { // as the next entry would read it
		t.Helper()
		w := s.Write(100)
		defer w.Abort()
		return writeTxnStatus(t, w, id)
	}
	put(1, true, &orchv1.Task{Id: "kept", HostId: "h1", LastStatus: "RUNNING"})
	put(2, false, &orchv1.Task{Id: "aborted", HostId: "h1", LastStatus: "PENDING"}, &orchv1.Task{Id: "kept", HostId: "h1", LastStatus: "STOPPED"})
	if got := status("aborted"); got != "absent" {
		t.Fatalf("aborted insert: %s", got)
	}
	if got := status("kept"); got != "RUNNING" {
		t.Fatalf("aborted update: kept is %s, want RUNNING", got)
	}

	var snap bytes.Buffer
	if err := s.Read().WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	put(3, true, &orchv1.Task{Id: "after-snapshot", HostId: "h1", LastStatus: "PENDING"})
	restored, err := ReadSnapshot(&snap)
	if err != nil {
		t.Fatal(err)
	}
	s.Replace(restored)
	for id, want := range map[string]string{"kept": "RUNNING", "after-snapshot": "absent"} {
		if got := status(id); got != want {
			t.Fatalf("after restore: %s is %s, want %s", id, got, want)
		}
	}
}

// TestHostWatchSeesWhatHostsActOn: a host's watch fires for what its session and the planner
// act on, and not for an agent's own reports that only move a task along.
func TestHostWatchSeesWhatHostsActOn(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	base := &orchv1.Task{Id: "t1", HostId: "h1", LastStatus: "PENDING", DesiredStatus: "RUNNING"}
	tests := []struct {
		name   string
		change func(*orchv1.Task)
		delete bool
		fires  bool
	}{
		{name: "placed", fires: true},
		{name: "PENDING to RUNNING", change: func(t *orchv1.Task) { t.LastStatus = "RUNNING" }},
		{name: "usage", change: func(t *orchv1.Task) { t.Usage = &orchv1.TaskUsage{MemoryBytes: 1} }},
		{name: "desired STOPPED", change: func(t *orchv1.Task) { t.DesiredStatus = "STOPPED" }, fires: true},
		{name: "DEPROVISIONING", change: func(t *orchv1.Task) { t.LastStatus = "DEPROVISIONING" }},
		{name: "STOPPED", change: func(t *orchv1.Task) { t.LastStatus = "STOPPED" }, fires: true},
		{name: "address held", change: func(t *orchv1.Task) { t.EniHeld = true }, fires: true},
		{name: "address released", change: func(t *orchv1.Task) { t.EniHeld = false }, fires: true},
		{name: "deleted", delete: true, fires: true},
	}
	cur := base
	for i, tt := range tests {
		ch := s.HostWatch("h1")
		w := s.Write(uint64(i + 1))
		switch {
		case tt.delete:
			err = w.DeleteTask(cur)
		case tt.change == nil:
			err = w.PutTask(cur)
		default:
			next := proto.Clone(cur).(*orchv1.Task)
			tt.change(next)
			cur = next
			err = w.PutTask(next)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
			if !tt.fires {
				t.Errorf("%s: the host's watch fired", tt.name)
			}
		default:
			if tt.fires {
				t.Errorf("%s: the host's watch did not fire", tt.name)
			}
		}
	}
}

// putTasks writes tasks in the entry at index, then commits or aborts.
func putTasks(t *testing.T, s *Store, index uint64, commit bool, tasks ...*orchv1.Task) {
	t.Helper()
	w := s.Write(index)
	for _, tk := range tasks {
		if err := w.PutTask(tk); err != nil {
			t.Fatal(err)
		}
	}
	if !commit {
		w.Abort()
		return
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// writeTxnStatus is the last status of task id as w reads it, "absent" if it has none.
func writeTxnStatus(t *testing.T, w *WriteTxn, id string) string {
	t.Helper()
	tk, err := w.Task(nil, id)
	if err != nil {
		t.Fatal(err)
	}
	if tk == nil {
		return "absent"
	}
	return tk.GetLastStatus()
}
