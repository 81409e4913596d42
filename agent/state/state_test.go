package state

import (
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

func TestCheckpointSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := db.HostID(); id != "" {
		t.Fatalf("new checkpoint has host id %q", id)
	}
	a := &orchv1.Assignment{Task: &orchv1.Task{Id: "t1", DesiredStatus: "RUNNING"}}
	st := &orchv1.TaskStatus{TaskId: "t1", LastStatus: "RUNNING"}
	if err := db.SetHostID("h1"); err != nil {
		t.Fatal(err)
	}
	if err := db.PutTasks([]*orchv1.AgentCheckpoint{{Assignment: a, Status: st}}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutTasks([]*orchv1.AgentCheckpoint{
		{Assignment: &orchv1.Assignment{Task: &orchv1.Task{Id: "t2"}}},
		{Assignment: &orchv1.Assignment{Task: &orchv1.Task{Id: "t3"}}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"t2", "t3"} {
		if err := db.DeleteTask(id); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id, _ := db.HostID()
	tasks, err := db.Tasks()
	if err != nil || id != "h1" || len(tasks) != 1 {
		t.Fatalf("after reopen: host %q, %d tasks, %v", id, len(tasks), err)
	}
	if !proto.Equal(tasks[0].GetAssignment(), a) || !proto.Equal(tasks[0].GetStatus(), st) {
		t.Fatalf("task record changed: %v", tasks[0])
	}
}
