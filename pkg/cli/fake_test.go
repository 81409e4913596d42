package cli

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	orchv1 "orch/proto/orch/v1"
)

// fakeOrch is an Orch server whose methods call the XxxFn fields; unset ones answer
// Unimplemented.
type fakeOrch struct {
	orchv1.UnimplementedOrchServer

	CreateClusterFn              func(context.Context, *orchv1.CreateClusterRequest) (*orchv1.CreateClusterResponse, error)
	DescribeClustersFn           func(context.Context, *orchv1.DescribeClustersRequest) (*orchv1.DescribeClustersResponse, error)
	ListClustersFn               func(context.Context, *orchv1.ListClustersRequest) (*orchv1.ListClustersResponse, error)
	DeleteClusterFn              func(context.Context, *orchv1.DeleteClusterRequest) (*orchv1.DeleteClusterResponse, error)
	RegisterTaskDefinitionFn     func(context.Context, *orchv1.RegisterTaskDefinitionRequest) (*orchv1.RegisterTaskDefinitionResponse, error)
	DescribeTaskDefinitionFn     func(context.Context, *orchv1.DescribeTaskDefinitionRequest) (*orchv1.DescribeTaskDefinitionResponse, error)
	ListTaskDefinitionsFn        func(context.Context, *orchv1.ListTaskDefinitionsRequest) (*orchv1.ListTaskDefinitionsResponse, error)
	DeregisterTaskDefinitionFn   func(context.Context, *orchv1.DeregisterTaskDefinitionRequest) (*orchv1.DeregisterTaskDefinitionResponse, error)
	RunTaskFn                    func(context.Context, *orchv1.RunTaskRequest) (*orchv1.RunTaskResponse, error)
	StopTaskFn                   func(context.Context, *orchv1.StopTaskRequest) (*orchv1.StopTaskResponse, error)
	DescribeTasksFn              func(context.Context, *orchv1.DescribeTasksRequest) (*orchv1.DescribeTasksResponse, error)
	ListTasksFn                  func(context.Context, *orchv1.ListTasksRequest) (*orchv1.ListTasksResponse, error)
	WatchTasksFn                 func(*orchv1.WatchTasksRequest, grpc.ServerStreamingServer[orchv1.WatchTasksResponse]) error
	CreateServiceFn              func(context.Context, *orchv1.CreateServiceRequest) (*orchv1.CreateServiceResponse, error)
	UpdateServiceFn              func(context.Context, *orchv1.UpdateServiceRequest) (*orchv1.UpdateServiceResponse, error)
	DeleteServiceFn              func(context.Context, *orchv1.DeleteServiceRequest) (*orchv1.DeleteServiceResponse, error)
	DescribeServicesFn           func(context.Context, *orchv1.DescribeServicesRequest) (*orchv1.DescribeServicesResponse, error)
	ListServicesFn               func(context.Context, *orchv1.ListServicesRequest) (*orchv1.ListServicesResponse, error)
	ListContainerInstancesFn     func(context.Context, *orchv1.ListContainerInstancesRequest) (*orchv1.ListContainerInstancesResponse, error)
	DescribeContainerInstancesFn func(context.Context, *orchv1.DescribeContainerInstancesRequest) (*orchv1.DescribeContainerInstancesResponse, error)
	GetLogsFn                    func(*orchv1.GetLogsRequest, grpc.ServerStreamingServer[orchv1.LogEntry]) error
}

func (f *fakeOrch) CreateCluster(ctx context.Context, r *orchv1.CreateClusterRequest) (*orchv1.CreateClusterResponse, error) {
	if f.CreateClusterFn == nil {
		return f.UnimplementedOrchServer.CreateCluster(ctx, r)
	}
	return f.CreateClusterFn(ctx, r)
}

func (f *fakeOrch) DescribeClusters(ctx context.Context, r *orchv1.DescribeClustersRequest) (*orchv1.DescribeClustersResponse, error) {
	if f.DescribeClustersFn == nil {
		return f.UnimplementedOrchServer.DescribeClusters(ctx, r)
	}
	return f.DescribeClustersFn(ctx, r)
}

func (f *fakeOrch) ListClusters(ctx context.Context, r *orchv1.ListClustersRequest) (*orchv1.ListClustersResponse, error) {
	if f.ListClustersFn == nil {
		return f.UnimplementedOrchServer.ListClusters(ctx, r)
	}
	return f.ListClustersFn(ctx, r)
}

func (f *fakeOrch) DeleteCluster(ctx context.Context, r *orchv1.DeleteClusterRequest) (*orchv1.DeleteClusterResponse, error) {
	if f.DeleteClusterFn == nil {
		return f.UnimplementedOrchServer.DeleteCluster(ctx, r)
	}
	return f.DeleteClusterFn(ctx, r)
}

func (f *fakeOrch) RegisterTaskDefinition(ctx context.Context, r *orchv1.RegisterTaskDefinitionRequest) (*orchv1.RegisterTaskDefinitionResponse, error) {
	if f.RegisterTaskDefinitionFn == nil {
		return f.UnimplementedOrchServer.RegisterTaskDefinition(ctx, r)
	}
	return f.RegisterTaskDefinitionFn(ctx, r)
}

func (f *fakeOrch) DescribeTaskDefinition(ctx context.Context, r *orchv1.DescribeTaskDefinitionRequest) (*orchv1.DescribeTaskDefinitionResponse, error) {
	if f.DescribeTaskDefinitionFn == nil {
		return f.UnimplementedOrchServer.DescribeTaskDefinition(ctx, r)
	}
	return f.DescribeTaskDefinitionFn(ctx, r)
}

func (f *fakeOrch) ListTaskDefinitions(ctx context.Context, r *orchv1.ListTaskDefinitionsRequest) (*orchv1.ListTaskDefinitionsResponse, error) {
	if f.ListTaskDefinitionsFn == nil {
		return f.UnimplementedOrchServer.ListTaskDefinitions(ctx, r)
	}
	return f.ListTaskDefinitionsFn(ctx, r)
}

func (f *fakeOrch) DeregisterTaskDefinition(ctx context.Context, r *orchv1.DeregisterTaskDefinitionRequest) (*orchv1.DeregisterTaskDefinitionResponse, error) {
	if f.DeregisterTaskDefinitionFn == nil {
		return f.UnimplementedOrchServer.DeregisterTaskDefinition(ctx, r)
	}
	return f.DeregisterTaskDefinitionFn(ctx, r)
}

func (f *fakeOrch) RunTask(ctx context.Context, r *orchv1.RunTaskRequest) (*orchv1.RunTaskResponse, error) {
	if f.RunTaskFn == nil {
		return f.UnimplementedOrchServer.RunTask(ctx, r)
	}
	return f.RunTaskFn(ctx, r)
}

func (f *fakeOrch) StopTask(ctx context.Context, r *orchv1.StopTaskRequest) (*orchv1.StopTaskResponse, error) {
	if f.StopTaskFn == nil {
		return f.UnimplementedOrchServer.StopTask(ctx, r)
	}
	return f.StopTaskFn(ctx, r)
}

func (f *fakeOrch) DescribeTasks(ctx context.Context, r *orchv1.DescribeTasksRequest) (*orchv1.DescribeTasksResponse, error) {
	if f.DescribeTasksFn == nil {
		return f.UnimplementedOrchServer.DescribeTasks(ctx, r)
	}
	return f.DescribeTasksFn(ctx, r)
}

func (f *fakeOrch) ListTasks(ctx context.Context, r *orchv1.ListTasksRequest) (*orchv1.ListTasksResponse, error) {
	if f.ListTasksFn == nil {
		return f.UnimplementedOrchServer.ListTasks(ctx, r)
	}
	return f.ListTasksFn(ctx, r)
}

func (f *fakeOrch) WatchTasks(r *orchv1.WatchTasksRequest, s grpc.ServerStreamingServer[orchv1.WatchTasksResponse]) error {
	if f.WatchTasksFn == nil {
		return f.UnimplementedOrchServer.WatchTasks(r, s)
	}
	return f.WatchTasksFn(r, s)
}

func (f *fakeOrch) CreateService(ctx context.Context, r *orchv1.CreateServiceRequest) (*orchv1.CreateServiceResponse, error) {
	if f.CreateServiceFn == nil {
		return f.UnimplementedOrchServer.CreateService(ctx, r)
	}
	return f.CreateServiceFn(ctx, r)
}

func (f *fakeOrch) UpdateService(ctx context.Context, r *orchv1.UpdateServiceRequest) (*orchv1.UpdateServiceResponse, error) {
	if f.UpdateServiceFn == nil {
		return f.UnimplementedOrchServer.UpdateService(ctx, r)
	}
	return f.UpdateServiceFn(ctx, r)
}

func (f *fakeOrch) DeleteService(ctx context.Context, r *orchv1.DeleteServiceRequest) (*orchv1.DeleteServiceResponse, error) {
	if f.DeleteServiceFn == nil {
		return f.UnimplementedOrchServer.DeleteService(ctx, r)
	}
	return f.DeleteServiceFn(ctx, r)
}

func (f *fakeOrch) DescribeServices(ctx context.Context, r *orchv1.DescribeServicesRequest) (*orchv1.DescribeServicesResponse, error) {
	if f.DescribeServicesFn == nil {
		return f.UnimplementedOrchServer.DescribeServices(ctx, r)
	}
	return f.DescribeServicesFn(ctx, r)
}

func (f *fakeOrch) ListServices(ctx context.Context, r *orchv1.ListServicesRequest) (*orchv1.ListServicesResponse, error) {
	if f.ListServicesFn == nil {
		return f.UnimplementedOrchServer.ListServices(ctx, r)
	}
	return f.ListServicesFn(ctx, r)
}

func (f *fakeOrch) ListContainerInstances(ctx context.Context, r *orchv1.ListContainerInstancesRequest) (*orchv1.ListContainerInstancesResponse, error) {
	if f.ListContainerInstancesFn == nil {
		return f.UnimplementedOrchServer.ListContainerInstances(ctx, r)
	}
	return f.ListContainerInstancesFn(ctx, r)
}

func (f *fakeOrch) DescribeContainerInstances(ctx context.Context, r *orchv1.DescribeContainerInstancesRequest) (*orchv1.DescribeContainerInstancesResponse, error) {
	if f.DescribeContainerInstancesFn == nil {
		return f.UnimplementedOrchServer.DescribeContainerInstances(ctx, r)
	}
	return f.DescribeContainerInstancesFn(ctx, r)
}

func (f *fakeOrch) GetLogs(r *orchv1.GetLogsRequest, s grpc.ServerStreamingServer[orchv1.LogEntry]) error {
	if f.GetLogsFn == nil {
		return f.UnimplementedOrchServer.GetLogs(r, s)
	}
	return f.GetLogsFn(r, s)
}

// serve starts f on a loopback port, with TLS as a scheduler serves, and returns its address.
func serve(t *testing.T, f *fakeOrch) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(serverCreds())
	orchv1.RegisterOrchServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// result is what one orchctl invocation produced.
type result struct {
	code           int
	stdout, stderr string
}

// orchctl runs the CLI against addr with args and stdin.
func orchctl(t *testing.T, addr, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return orchctlCtx(ctx, addr, stdin, args...)
}

func orchctlCtx(ctx context.Context, addr, stdin string, args ...string) result {
	var out, errb bytes.Buffer
	if addr != "" {
		args = append([]string{"--endpoint", addr}, args...)
	}
	code := Run(ctx, args, strings.NewReader(stdin), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// recorder keeps the last request a fake method received.
type recorder[T any] struct {
	mu  sync.Mutex
	req T
	n   int
}

func (r *recorder[T]) set(req T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.req = req
	r.n++
}

func (r *recorder[T]) get() (T, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.req, r.n
}
