package api

import (
	"context"
	"sync"
	"testing"

	orchv1 "orch/proto/orch/v1"
)

// Concurrent RunTask calls are planned in batches; together they must never overcommit a host
// or hand out an address twice.
func TestConcurrentRunTaskBatches(t *testing.T) {
	s, _ := newServer(t, 128*25) // room for exactly 25 tasks of 128 MiB
	register(t, s, 128)
	var wg sync.WaitGroup
	var mu sync.Mutex
	placed, failed := 0, 0
	ips := map[string]bool{}
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.RunTask(context.Background(), &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web", Count: 5})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			placed += len(resp.GetTasks())
			failed += len(resp.GetFailures())
			for _, tk := range resp.GetTasks() {
				if ips[tk.GetEni().GetIp()] {
					t.Errorf("address %s handed out twice", tk.GetEni().GetIp())
				}
				ips[tk.GetEni().GetIp()] = true
			}
		}()
	}
	wg.Wait()
	if placed != 25 || failed != 75 {
		t.Fatalf("placed %d, failed %d; want 25 and 75", placed, failed)
	}
	tasks, _ := s.store.Read().Tasks(nil)
	if len(tasks) != 25 {
		t.Fatalf("%d tasks stored, want 25", len(tasks))
	}
}
