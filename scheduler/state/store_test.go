package state

import (
	"testing"

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
