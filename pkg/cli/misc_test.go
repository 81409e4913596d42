package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"orch/pkg/client"
	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
)

const webJSON = `{
  "family": "web",
  "networkMode": "awsvpc",
  "cpu": "256",
  "memory": "512",
  "containerDefinitions": [
    {"name": "web", "image": "nginx:1", "essential": true, "portMappings": [{"containerPort": 80}]}
  ],
  "tags": [{"key": "team", "value": "web"}]
}`

func TestRegisterTaskDefinition(t *testing.T) {
	want, err := taskdef.Parse([]byte(webJSON))
	if err != nil {
		t.Fatalf("taskdef.Parse(webJSON): %v", err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "web.json")
	if err := os.WriteFile(file, []byte(webJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	registered := proto.Clone(want).(*orchv1.TaskDefinition)
	registered.Revision, registered.Status = 4, "ACTIVE"
	registered.TaskDefinitionArn = "arn:aws:ecs:local:000000000000:task-definition/web:4"

	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantReq  bool // the server must receive want
		wantCode int
		wantOut  string
		outHas   []string
		errHas   []string
	}{
		{name: "file", args: []string{"--cli-input-json", "file://" + file}, wantReq: true, wantOut: "web:4\n"},
		{name: "stdin", args: []string{"--cli-input-json", "-"}, stdin: webJSON, wantReq: true, wantOut: "web:4\n"},
		{name: "literal", args: []string{"--cli-input-json", webJSON}, wantReq: true, wantOut: "web:4\n"},
		{
			name: "json output", args: []string{"--cli-input-json", "file://" + file, "-o", "json"}, wantReq: true,
			outHas: []string{"{\n  \"taskDefinition\": {\n    \"taskDefinitionArn\": \"arn:aws:ecs:local:000000000000:task-definition/web:4\",\n", `"revision": 4`},
		},
		{
			name: "missing file", args: []string{"--cli-input-json", "file://" + filepath.Join(dir, "nope.json")},
			wantCode: 252, errHas: []string{"argument --cli-input-json: unable to load paramfile file://", "no such file"},
		},
		{
			name: "invalid definition", args: []string{"--cli-input-json", "-"}, stdin: `{"family": "web", "containerDefinitions": [{"name": "web", "imagee": "x"}]}`,
			wantCode: 252, errHas: []string{"orchctl: error: argument --cli-input-json: ", "imagee"},
		},
		{name: "no input", args: nil, wantCode: 252, errHas: []string{`required flag(s) "cli-input-json" not set`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got recorder[*orchv1.RegisterTaskDefinitionRequest]
			addr := serve(t, &fakeOrch{
				RegisterTaskDefinitionFn: func(_ context.Context, r *orchv1.RegisterTaskDefinitionRequest) (*orchv1.RegisterTaskDefinitionResponse, error) {
					got.set(r)
					return &orchv1.RegisterTaskDefinitionResponse{TaskDefinition: registered, Tags: registered.Tags}, nil
				},
			})
			res := orchctl(t, addr, tt.stdin, append([]string{"register-task-definition"}, tt.args...)...)
			if res.code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			req, n := got.get()
			switch {
			case tt.wantReq && (n != 1 || !proto.Equal(req.TaskDefinition, want)):
				t.Errorf("server got %d requests, last %v; want %v", n, req, want)
			case !tt.wantReq && n != 0:
				t.Errorf("server got a request: %v", req)
			}
			if tt.wantOut != "" && res.stdout != tt.wantOut {
				t.Errorf("stdout %q, want %q", res.stdout, tt.wantOut)
			}
			for _, s := range tt.outHas {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
			for _, s := range tt.errHas {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, res.stderr)
				}
			}
		})
	}
}

func TestLogs(t *testing.T) {
	entries := []*orchv1.LogEntry{
		{Container: "web", Stream: "stdout", TimestampUnixNano: 1, Message: "listening on :80"},
		{Container: "sidecar", Stream: "stderr", TimestampUnixNano: 2, Message: "ready\n"},
	}
	one := task(idA, "RUNNING")
	two := task(idA, "RUNNING", func(t *orchv1.Task) {
		t.Containers = append(t.Containers, &orchv1.Container{Name: "sidecar", LastStatus: "RUNNING"})
	})
	tests := []struct {
		name         string
		args         []string
		task         *orchv1.Task
		err          error
		wantDescribe bool
		wantReq      *orchv1.GetLogsRequest
		wantCode     int
		wantOut      string
		errHas       string
	}{
		{
			name: "several containers are prefixed", args: []string{idA}, task: two, wantDescribe: true,
			wantReq: &orchv1.GetLogsRequest{Cluster: "default", Task: idA},
			wantOut: "[web] listening on :80\n[sidecar] ready\n",
		},
		{
			name: "one container", args: []string{idA, "--tail", "10", "--cluster", "prod"}, task: one, wantDescribe: true,
			wantReq: &orchv1.GetLogsRequest{Cluster: "prod", Task: idA, Tail: 10},
			wantOut: "listening on :80\nready\n",
		},
		{
			name: "chosen container", args: []string{"--container", "web", "arn:aws:ecs:local:000000000000:task/default/" + idA}, task: two,
			wantReq: &orchv1.GetLogsRequest{Cluster: "default", Task: "arn:aws:ecs:local:000000000000:task/default/" + idA, Container: "web"},
			wantOut: "listening on :80\nready\n",
		},
		{
			name: "json lines", args: []string{idA, "-o", "json"}, task: one, wantDescribe: true,
			wantReq: &orchv1.GetLogsRequest{Cluster: "default", Task: idA},
			wantOut: `{"container":"web","stream":"stdout","timestampUnixNano":"1","message":"listening on :80"}` + "\n" +
				`{"container":"sidecar","stream":"stderr","timestampUnixNano":"2","message":"ready\n"}` + "\n",
		},
		{
			name: "server error", args: []string{idA, "--container", "web"}, err: status.Error(codes.NotFound, "task "+idA+" not found"),
			wantReq:  &orchv1.GetLogsRequest{Cluster: "default", Task: idA, Container: "web"},
			wantCode: 254, errHas: "An error occurred (NotFound) when calling the GetLogs operation: task " + idA + " not found",
		},
		{name: "no task", args: nil, wantCode: 252, errHas: "accepts 1 arg(s), received 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got recorder[*orchv1.GetLogsRequest]
			var described recorder[*orchv1.DescribeTasksRequest]
			addr := serve(t, &fakeOrch{
				DescribeTasksFn: func(_ context.Context, r *orchv1.DescribeTasksRequest) (*orchv1.DescribeTasksResponse, error) {
					described.set(r)
					return &orchv1.DescribeTasksResponse{Tasks: []*orchv1.Task{tt.task}}, nil
				},
				GetLogsFn: func(r *orchv1.GetLogsRequest, s grpc.ServerStreamingServer[orchv1.LogEntry]) error {
					got.set(r)
					if tt.err != nil {
						return tt.err
					}
					for _, e := range entries {
						if err := s.Send(e); err != nil {
							return err
						}
					}
					return nil
				},
			})
			res := orchctl(t, addr, "", append([]string{"logs"}, tt.args...)...)
			if res.code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			if _, n := described.get(); (n > 0) != tt.wantDescribe {
				t.Errorf("DescribeTasks called %d times, want called: %v", n, tt.wantDescribe)
			}
			if req, _ := got.get(); tt.wantReq != nil && !proto.Equal(req, tt.wantReq) {
				t.Errorf("GetLogs request %v, want %v", req, tt.wantReq)
			}
			if res.stdout != tt.wantOut {
				t.Errorf("stdout:\n%q\nwant:\n%q", res.stdout, tt.wantOut)
			}
			if !strings.Contains(res.stderr, tt.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.errHas, res.stderr)
			}
		})
	}
}

// lineWriter signals when it has received n lines.
type lineWriter struct {
	mu    sync.Mutex
	buf   strings.Builder
	n     int
	ready chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Count(w.buf.String(), "\n") >= w.n && w.ready != nil {
		close(w.ready)
		w.ready = nil
	}
	return len(p), nil
}

func TestLogsFollowInterrupted(t *testing.T) {
	var got recorder[*orchv1.GetLogsRequest]
	addr := serve(t, &fakeOrch{
		DescribeTasksFn: func(context.Context, *orchv1.DescribeTasksRequest) (*orchv1.DescribeTasksResponse, error) {
			return &orchv1.DescribeTasksResponse{Tasks: []*orchv1.Task{task(idA, "RUNNING")}}, nil
		},
		GetLogsFn: func(r *orchv1.GetLogsRequest, s grpc.ServerStreamingServer[orchv1.LogEntry]) error {
			got.set(r)
			s.Send(&orchv1.LogEntry{Container: "web", Message: "one"})
			s.Send(&orchv1.LogEntry{Container: "web", Message: "two"})
			<-s.Context().Done() // a follower never ends by itself
			return nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{n: 2, ready: make(chan struct{})}
	ready := out.ready
	var errb strings.Builder
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"--endpoint", addr, "logs", "-f", idA}, strings.NewReader(""), out, &errb)
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no log lines within 10s")
	}
	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d, want 0; stderr: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs -f did not end after Ctrl-C")
	}
	if s := out.buf.String(); s != "one\ntwo\n" {
		t.Errorf("stdout %q", s)
	}
	if req, _ := got.get(); !req.Follow {
		t.Errorf("GetLogs request %v: follow not set", req)
	}
}

func TestEndpoints(t *testing.T) {
	fx := &fixture{responses: map[string]proto.Message{"ListClusters": &orchv1.ListClustersResponse{ClusterArns: []string{"arn:c/default"}}}}
	up := serve(t, fx.fake())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := lis.Addr().String()
	lis.Close()

	tests := []struct {
		name     string
		env      string
		args     []string
		wantCode int
		errHas   string
	}{
		{name: "flag", env: down, args: []string{"--endpoint", up, "list-clusters"}},
		{name: "flag tries in order", args: []string{"list-clusters", "--endpoint", down + "," + up}},
		{name: "env", env: down + "," + up, args: []string{"list-clusters"}},
		{name: "nothing listening", args: []string{"list-clusters", "--endpoint", down}, wantCode: 255,
			errHas: "Could not connect to a scheduler: endpoint " + down + ": dial tcp " + down + ": connect: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(client.EnvEndpoints, tt.env)
			res := orchctl(t, "", "", tt.args...)
			if res.code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			if tt.wantCode == 0 && res.stdout != "arn:c/default\n" {
				t.Errorf("stdout %q", res.stdout)
			}
			if !strings.Contains(res.stderr, tt.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.errHas, res.stderr)
			}
		})
	}
}

func TestLocalCommands(t *testing.T) {
	tests := []struct {
		args   []string
		outHas []string
	}{
		{[]string{"version"}, []string{"orchctl dev ("}},
		{[]string{"completion", "bash"}, []string{"# bash completion V2 for orchctl", "__start_orchctl"}},
		{[]string{"completion", "zsh"}, []string{"#compdef orchctl"}},
		{[]string{"--help"}, []string{"Task definitions:", "run-task", "--endpoint"}},
		{[]string{"run-task", "--help"}, []string{"Examples:", "--wait", `--cluster string           cluster name or ARN (default "default")`}},
		{[]string{"__complete", "list-tasks", "--desired-status", ""}, []string{"RUNNING\nSTOPPED\n"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Setenv(client.EnvEndpoints, "127.0.0.1:1") // never dialed
			res := orchctl(t, "", "", tt.args...)
			if res.code != 0 {
				t.Errorf("exit code %d\nstderr:\n%s", res.code, res.stderr)
			}
			for _, s := range tt.outHas {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
		})
	}
}

func TestCompleteClusters(t *testing.T) {
	fx := &fixture{responses: map[string]proto.Message{"ListClusters": &orchv1.ListClustersResponse{
		ClusterArns: []string{"arn:aws:ecs:local:000000000000:cluster/default", "arn:aws:ecs:local:000000000000:cluster/prod"},
	}}}
	addr := serve(t, fx.fake())
	res := orchctl(t, addr, "", "__complete", "run-task", "--cluster", "p")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "prod\n:4\n") {
		t.Errorf("exit code %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}
