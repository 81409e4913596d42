package cli

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

// watchScript is a fake WatchTasks: it checks nothing, records the request, sends batches and
// then ends with end (nil: EOF), or, if block is set, waits for the client to go away.
func watchScript(got *recorder[*orchv1.WatchTasksRequest], block bool, end error, batches ...[]*orchv1.Task) func(*orchv1.WatchTasksRequest, grpc.ServerStreamingServer[orchv1.WatchTasksResponse]) error {
	return func(req *orchv1.WatchTasksRequest, s grpc.ServerStreamingServer[orchv1.WatchTasksResponse]) error {
		got.set(req)
		for _, b := range batches {
			if err := s.Send(&orchv1.WatchTasksResponse{Tasks: b}); err != nil {
				return err
			}
		}
		if block {
			select {
			case <-s.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return nil
		}
		return end
	}
}

func TestRunTaskWait(t *testing.T) {
	started := []*orchv1.Task{task(idA, "PROVISIONING"), task(idB, "PROVISIONING")}
	ranA := task(idA, "RUNNING", withIP("10.64.0.5"))
	ranB := task(idB, "RUNNING", withIP("10.64.0.6"))
	oom := task(idA, "STOPPED", stoppedBy("EssentialContainerExited", "Essential container in task exited", 137, "OutOfMemoryError: Container killed due to memory usage"))
	tests := []struct {
		name     string
		args     []string
		block    bool
		end      error
		batches  [][]*orchv1.Task
		wantCode int
		wantErr  string   // exact stderr
		errHas   []string // substrings of stderr
		outHas   []string
	}{
		{
			name:  "all running",
			args:  []string{"run-task", "--task-definition", "web", "--count", "2", "--wait"},
			block: true, // the client must stop by itself once every task runs
			batches: [][]*orchv1.Task{
				{task(idA, "PENDING"), task(idB, "PROVISIONING")},
				{task(idA, "PENDING"), task(idB, "PENDING")},
				{ranA},
				{ranB},
			},
			wantErr: "01234567 PENDING\nfedcba98 PROVISIONING\nfedcba98 PENDING\n01234567 RUNNING 10.64.0.5\nfedcba98 RUNNING 10.64.0.6\n",
			outHas: []string{
				idA + "  web:3       RUNNING  RUNNING  10.64.0.5",
				idB + "  web:3       RUNNING  RUNNING  10.64.0.6",
			},
		},
		{
			name:    "all running json",
			args:    []string{"run-task", "--task-definition", "web", "--count", "2", "--wait", "-o", "json"},
			batches: [][]*orchv1.Task{{ranA, ranB}},
			wantErr: "01234567 RUNNING 10.64.0.5\nfedcba98 RUNNING 10.64.0.6\n",
			outHas:  []string{"{\n  \"tasks\": [\n", `"lastStatus": "RUNNING"`, `"ip": "10.64.0.6"`},
		},
		{
			name:     "one stopped",
			args:     []string{"run-task", "--task-definition", "web", "--count", "2", "--wait"},
			batches:  [][]*orchv1.Task{{task(idA, "PENDING"), ranB}, {task(idA, "DEACTIVATING")}, {oom}},
			wantCode: 1,
			wantErr: "01234567 PENDING\nfedcba98 RUNNING 10.64.0.6\n01234567 DEACTIVATING\n01234567 STOPPED\n" +
				"Task 0123456789abcdef0123456789abcdef stopped (EssentialContainerExited): Essential container in task exited\n" +
				"  container web: STOPPED, exit code 137, OutOfMemoryError: Container killed due to memory usage\n",
			outHas: []string{idA + "  web:3       STOPPED  STOPPED", "EssentialContainerExited"},
		},
		{
			name:     "stream ends early",
			args:     []string{"run-task", "--task-definition", "web", "--count", "2", "--wait"},
			batches:  [][]*orchv1.Task{{task(idA, "PENDING"), ranB}},
			wantCode: 1,
			errHas:   []string{"Task 0123456789abcdef0123456789abcdef is PENDING, not RUNNING: the watch ended early."},
		},
		{
			name:     "stream fails",
			args:     []string{"run-task", "--task-definition", "web", "--count", "2", "--wait"},
			batches:  [][]*orchv1.Task{{task(idA, "PENDING")}},
			end:      status.Error(codes.Unavailable, "leader lost"),
			wantCode: 254,
			errHas:   []string{"01234567 PENDING\n", "An error occurred (Unavailable) when calling the WatchTasks operation: leader lost"},
			outHas:   []string{idA + "  web:3       PENDING"}, // the started tasks are still shown
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var runReq recorder[*orchv1.RunTaskRequest]
			var watchReq recorder[*orchv1.WatchTasksRequest]
			addr := serve(t, &fakeOrch{
				RunTaskFn: func(_ context.Context, r *orchv1.RunTaskRequest) (*orchv1.RunTaskResponse, error) {
					runReq.set(r)
					return &orchv1.RunTaskResponse{Tasks: started}, nil
				},
				WatchTasksFn: watchScript(&watchReq, tt.block, tt.end, tt.batches...),
			})
			res := orchctl(t, addr, "", tt.args...)
			if res.code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			wr, n := watchReq.get()
			want := &orchv1.WatchTasksRequest{Cluster: "default", Tasks: []string{idA, idB}, UntilStatus: "RUNNING"}
			if n != 1 || !proto.Equal(wr, want) {
				t.Errorf("WatchTasks got %d calls, last %v; want %v", n, wr, want)
			}
			if tt.wantErr != "" && res.stderr != tt.wantErr {
				t.Errorf("stderr:\n%s\nwant:\n%s", res.stderr, tt.wantErr)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, res.stderr)
				}
			}
			for _, s := range tt.outHas {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
		})
	}
}

func TestRunTaskWaitInterrupted(t *testing.T) {
	var watchReq recorder[*orchv1.WatchTasksRequest]
	sent := make(chan struct{})
	addr := serve(t, &fakeOrch{
		RunTaskFn: func(context.Context, *orchv1.RunTaskRequest) (*orchv1.RunTaskResponse, error) {
			return &orchv1.RunTaskResponse{Tasks: []*orchv1.Task{task(idA, "PENDING")}}, nil
		},
		WatchTasksFn: func(r *orchv1.WatchTasksRequest, s grpc.ServerStreamingServer[orchv1.WatchTasksResponse]) error {
			watchReq.set(r)
			s.Send(&orchv1.WatchTasksResponse{Tasks: []*orchv1.Task{task(idA, "PENDING")}})
			close(sent)
			<-s.Context().Done()
			return nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sent
		time.Sleep(50 * time.Millisecond)
		cancel() // Ctrl-C
	}()
	res := orchctlCtx(ctx, addr, "", "run-task", "--task-definition", "web", "--wait")
	if res.code != 130 {
		t.Errorf("exit code %d, want 130\nstderr:\n%s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, idA) {
		t.Errorf("stdout does not show the started task:\n%s", res.stdout)
	}
}

func TestStopTaskWait(t *testing.T) {
	stopping := task(idA, "RUNNING", func(t *orchv1.Task) { t.DesiredStatus = "STOPPED" })
	final := task(idA, "STOPPED", stoppedBy("UserInitiated", "Task stopped by user", 0, ""))
	tests := []struct {
		name     string
		args     []string
		resp     *orchv1.StopTaskResponse
		batches  [][]*orchv1.Task
		wantCode int
		wantErr  string
		wantOut  string
		outHas   []string
	}{
		{
			name:    "by id",
			args:    []string{"stop-task", "--cluster", "prod", "--task", idA, "--wait"},
			resp:    &orchv1.StopTaskResponse{Task: stopping},
			batches: [][]*orchv1.Task{{stopping}, {task(idA, "STOPPING")}, {final}},
			wantErr: "01234567 RUNNING\n01234567 STOPPING\n01234567 STOPPED\n",
			wantOut: "" +
				"TASK                              DEFINITION  LAST     DESIRED  IP  CPU  MEMORY  CREATED               STARTED  STOPPED               STOP CODE      STOPPED REASON\n" +
				"0123456789abcdef0123456789abcdef  web:3       STOPPED  STOPPED  -   -    -       2025-03-01T12:00:00Z  -        2025-03-01T12:01:00Z  UserInitiated  Task stopped by user\n" +
				"\n" +
				"TASK                              CONTAINER  STATUS   EXIT CODE  HEALTH  REASON\n" +
				"0123456789abcdef0123456789abcdef  web        STOPPED  0          -       -\n",
		},
		{
			name:    "by ARN without a task in the response, json",
			args:    []string{"stop-task", "--cluster", "prod", "--task", "arn:aws:ecs:local:000000000000:task/prod/" + idA, "--wait", "-o", "json"},
			resp:    &orchv1.StopTaskResponse{},
			batches: [][]*orchv1.Task{{final}},
			wantErr: "01234567 STOPPED\n",
			outHas:  []string{"{\n  \"task\": {\n", `"stopCode": "UserInitiated"`, `"exitCode": 0`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var watchReq recorder[*orchv1.WatchTasksRequest]
			addr := serve(t, &fakeOrch{
				StopTaskFn: func(context.Context, *orchv1.StopTaskRequest) (*orchv1.StopTaskResponse, error) {
					return tt.resp, nil
				},
				WatchTasksFn: watchScript(&watchReq, true, nil, tt.batches...),
			})
			res := orchctl(t, addr, "", tt.args...)
			if res.code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			wr, _ := watchReq.get()
			want := &orchv1.WatchTasksRequest{Cluster: "prod", Tasks: []string{idA}, UntilStatus: "STOPPED"}
			if !proto.Equal(wr, want) {
				t.Errorf("WatchTasks got %v; want %v", wr, want)
			}
			if res.stderr != tt.wantErr {
				t.Errorf("stderr:\n%s\nwant:\n%s", res.stderr, tt.wantErr)
			}
			if tt.wantOut != "" && res.stdout != tt.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", res.stdout, tt.wantOut)
			}
			for _, s := range tt.outHas {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
		})
	}
}

// The server ends a watch "until RUNNING" once a task is at or past RUNNING, e.g. DEACTIVATING:
// the client must then follow that task until STOPPED to report why it stopped.
func TestRunTaskWaitFollowsStopping(t *testing.T) {
	oom := task(idA, "STOPPED", stoppedBy("EssentialContainerExited", "Essential container in task exited", 137, "OutOfMemoryError: Container killed due to memory usage"))
	var mu sync.Mutex
	var reqs []*orchv1.WatchTasksRequest
	addr := serve(t, &fakeOrch{
		RunTaskFn: func(context.Context, *orchv1.RunTaskRequest) (*orchv1.RunTaskResponse, error) {
			return &orchv1.RunTaskResponse{Tasks: []*orchv1.Task{task(idA, "PROVISIONING")}}, nil
		},
		WatchTasksFn: func(r *orchv1.WatchTasksRequest, s grpc.ServerStreamingServer[orchv1.WatchTasksResponse]) error {
			mu.Lock()
			reqs = append(reqs, r)
			n := len(reqs)
			mu.Unlock()
			// The task was RUNNING only between two updates: the client never sees it.
			batches := [][]*orchv1.Task{{task(idA, "PENDING")}, {task(idA, "DEACTIVATING")}}
			if n > 1 {
				batches = [][]*orchv1.Task{{task(idA, "DEACTIVATING")}, {oom}}
			}
			for _, b := range batches {
				if err := s.Send(&orchv1.WatchTasksResponse{Tasks: b}); err != nil {
					return err
				}
			}
			return nil
		},
	})
	res := orchctl(t, addr, "", "run-task", "--task-definition", "web", "--wait")
	if res.code != 1 {
		t.Errorf("exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	wantErr := "01234567 PENDING\n01234567 DEACTIVATING\n01234567 STOPPED\n" +
		"Task 0123456789abcdef0123456789abcdef stopped (EssentialContainerExited): Essential container in task exited\n" +
		"  container web: STOPPED, exit code 137, OutOfMemoryError: Container killed due to memory usage\n"
	if res.stderr != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", res.stderr, wantErr)
	}
	want := []*orchv1.WatchTasksRequest{
		{Cluster: "default", Tasks: []string{idA}, UntilStatus: "RUNNING"},
		{Cluster: "default", Tasks: []string{idA}, UntilStatus: "STOPPED"},
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reqs) != len(want) {
		t.Fatalf("WatchTasks called %d times, want %d", len(reqs), len(want))
	}
	for i := range want {
		if !proto.Equal(reqs[i], want[i]) {
			t.Errorf("WatchTasks call %d: %v, want %v", i, reqs[i], want[i])
		}
	}
}
