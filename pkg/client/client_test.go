package client

import (
	"context"
	"crypto/tls"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

type fakeOrch struct {
	orchv1.UnimplementedOrchServer
}

func (fakeOrch) ListClusters(context.Context, *orchv1.ListClustersRequest) (*orchv1.ListClustersResponse, error) {
	return &orchv1.ListClustersResponse{ClusterArns: []string{"arn:aws:ecs:local:000000000000:cluster/default"}}, nil
}

// startServer serves a fake Orch over TLS on a loopback port, with a scheduler certificate of
// a new test CA, and returns its address and the CA certificate (PEM).
func startServer(t *testing.T) (addr string, caPEM []byte) {
	t.Helper()
	ca := newCA(t)
	return serveFake(t, grpc.Creds(credentials.NewTLS(schedulerTLS(t, ca)))), ca.CertPEM
}

// startPlainServer serves a fake Orch without TLS, for WithInsecure.
func startPlainServer(t *testing.T) string {
	t.Helper()
	return serveFake(t)
}

func serveFake(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	orchv1.RegisterOrchServer(srv, fakeOrch{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// schedulerTLS is a scheduler's server configuration with a certificate of ca. The certificate
// carries no address, only pki.SchedulerServerName, which is what clients verify.
func schedulerTLS(t *testing.T, ca *pki.CA) *tls.Config {
	t.Helper()
	keyPEM, csr, err := pki.NewKeyAndCSR("sched-1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(csr, "sched-1", pki.RoleScheduler, nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := pki.KeyPair(certPEM, keyPEM, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return pki.ServerTLSWith(ca.Cert, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair, nil })
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestResolveEndpoints(t *testing.T) {
	tests := []struct {
		name, flag, env string
		want            []string
	}{
		{"default", "", "", []string{DefaultEndpoint}},
		{"env", "", "10.0.0.1:7400, 10.0.0.2:7400", []string{"10.0.0.1:7400", "10.0.0.2:7400"}},
		{"flag beats env", "h:1,h:2", "10.0.0.1:7400", []string{"h:1", "h:2"}},
		{"blank env", "", " , ", []string{DefaultEndpoint}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvEndpoints, tt.env)
			if got := ResolveEndpoints(tt.flag); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ResolveEndpoints(%q) = %q, want %q", tt.flag, got, tt.want)
			}
		})
	}
}

func TestDial(t *testing.T) {
	up, caPEM := startServer(t)
	down := closedAddr(t)
	tests := []struct {
		name      string
		endpoints []string
		env       string
		want      string // connected endpoint; empty: Dial fails
		wantErr   []string
	}{
		{name: "single", endpoints: []string{up}, want: up},
		{name: "first down", endpoints: []string{down, up}, want: up},
		{name: "from env", env: down + "," + up, want: up},
		{name: "all down", endpoints: []string{down}, wantErr: []string{down, "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvEndpoints, tt.env)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, tt.endpoints, WithCA(caPEM), WithConnectTimeout(2*time.Second))
			if tt.want == "" {
				if err == nil {
					c.Close()
					t.Fatal("Dial succeeded, want error")
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if c.Endpoint() != tt.want {
				t.Errorf("Endpoint() = %s, want %s", c.Endpoint(), tt.want)
			}
			resp, err := c.ListClusters(ctx, &orchv1.ListClustersRequest{})
			if err != nil {
				t.Fatalf("ListClusters: %v", err)
			}
			if len(resp.ClusterArns) != 1 {
				t.Errorf("ListClusters = %v", resp)
			}
		})
	}
}

func TestDialTimeout(t *testing.T) {
	// A listener that never completes the HTTP/2 handshake: the connect timeout must fire.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	start := time.Now()
	_, err = Dial(context.Background(), []string{lis.Addr().String()}, WithInsecure(), WithConnectTimeout(300*time.Millisecond))
	if err == nil {
		t.Fatal("Dial succeeded against a silent listener")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Dial took %s, want about 300ms", d)
	}
}

func TestWithDialOptions(t *testing.T) {
	up, caPEM := startServer(t)
	called := false
	icpt := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		called = true
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c, err := Dial(context.Background(), []string{up}, WithCA(caPEM), WithDialOptions(grpc.WithUnaryInterceptor(icpt)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ListClusters(context.Background(), &orchv1.ListClustersRequest{}); err != nil {
		t.Fatal(err)
	}
	if !called {
		t.Error("interceptor from WithDialOptions was not used")
	}
}
