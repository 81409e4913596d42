// Package client is the Go client of orch's API (service orch.v1.Orch): it dials one of several
// scheduler endpoints and exposes the generated gRPC client. orchctl, tests and benchmarks use
// it; any scheduler answers (followers forward writes to the leader), so the first endpoint that
// connects is as good as any other.
//
// Connections use TLS 1.3 and verify the scheduler against the cluster CA certificate (WithCA,
// WithCAFile or $ORCH_CA_CERT; every scheduler writes it to <data-dir>/ca.pem) under the name
// every scheduler certificate carries (pki.SchedulerServerName), whatever address is dialed.
// The client presents no certificate: it authenticates with an API token (WithToken).
package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	orchv1 "orch/proto/orch/v1"
)

// DefaultEndpoint is the scheduler address used when neither an endpoint nor ORCH_ADDR is given.
const DefaultEndpoint = "127.0.0.1:7400"

// EnvEndpoints names the environment variable that holds comma-separated scheduler endpoints.
const EnvEndpoints = "ORCH_ADDR"

// DefaultConnectTimeout bounds the attempt to connect to one endpoint.
const DefaultConnectTimeout = 5 * time.Second

// Client is a connection to one scheduler. The embedded OrchClient carries every API call.
type Client struct {
	orchv1.OrchClient
	conn     *grpc.ClientConn
	endpoint string
}

// Opt configures Dial.
type Opt func(*options)

type options struct {
	dialOpts       []grpc.DialOption
	connectTimeout time.Duration
	caPEM          []byte // WithCA
	caFile         string // WithCAFile
	trust          trust  // WithCA, WithCAFile, WithInsecure, WithTransportCredentials
	creds          credentials.TransportCredentials
}

// ConsistentHeader is the gRPC metadata key that asks a scheduler to serve a read through the
// leader, linearizably, instead of from its local state (which may lag by a heartbeat).
const ConsistentHeader = "orch-consistent"

// EnvToken names the environment variable orchctl reads an API token from.
const EnvToken = "ORCH_TOKEN"

// WithToken makes every call carry the API token ("authorization: Bearer <token>").
func WithToken(token string) Opt {
	return withHeader("authorization", "Bearer "+token)
}

// Bearer is an API token as gRPC per-call credentials ("authorization: Bearer <token>"), for
// callers that dial with grpc directly; over TLS only.
type Bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (Bearer) RequireTransportSecurity() bool { return true }

// WithConsistentReads makes every call of the client carry ConsistentHeader.
func WithConsistentReads() Opt { return withHeader(ConsistentHeader, "true") }

// withHeader adds a metadata header to every unary and streaming call.
func withHeader(key, value string) Opt {
	return WithDialOptions(
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, key, value), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(metadata.AppendToOutgoingContext(ctx, key, value), desc, cc, method, opts...)
		}),
	)
}

// WithDialOptions adds gRPC dial options (per-RPC credentials, interceptors), applied after
// the transport security (WithCA, WithCAFile, WithInsecure or WithTransportCredentials).
func WithDialOptions(opts ...grpc.DialOption) Opt {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithConnectTimeout sets how long Dial waits for each endpoint before trying the next one
// (default DefaultConnectTimeout). The context given to Dial bounds the whole attempt.
func WithConnectTimeout(d time.Duration) Opt {
	return func(o *options) { o.connectTimeout = d }
}

// ResolveEndpoints returns the endpoints to dial: those in flag (comma-separated) if it is not
// empty, else those in $ORCH_ADDR, else DefaultEndpoint.
func ResolveEndpoints(flag string) []string {
	if eps := splitEndpoints(flag); len(eps) > 0 {
		return eps
	}
	if eps := splitEndpoints(os.Getenv(EnvEndpoints)); len(eps) > 0 {
		return eps
	}
	return []string{DefaultEndpoint}
}

func splitEndpoints(s string) []string {
	var eps []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return eps
}

// Dial connects to the first of endpoints that accepts a connection, trying them in order.
// With no endpoints it uses ResolveEndpoints(""): $ORCH_ADDR or DefaultEndpoint.
//
// The transport is TLS verified against the CA certificate of WithCA or WithCAFile, else of
// the file named by $ORCH_CA_CERT, unless WithInsecure or transport credentials in
// WithDialOptions say otherwise. Without any of them Dial fails with ErrCARequired; a CA
// certificate that cannot be used fails with a *CAError naming it. Otherwise the error names
// every endpoint tried and why it failed (for a scheduler whose certificate the CA does not
// verify: the TLS handshake error).
func Dial(ctx context.Context, endpoints []string, opts ...Opt) (*Client, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.connectTimeout <= 0 {
		o.connectTimeout = DefaultConnectTimeout
	}
	if len(endpoints) == 0 {
		endpoints = ResolveEndpoints("")
	}
	security, err := o.transport()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ep := range endpoints {
		conn, err := connect(ctx, ep, &o, security)
		if err == nil {
			return &Client{OrchClient: orchv1.NewOrchClient(conn), conn: conn, endpoint: ep}, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("could not connect to %s: %w", strings.Join(endpoints, ", "), errors.Join(errs...))
}

// connect dials one endpoint and waits until the connection is ready or has failed.
func connect(ctx context.Context, endpoint string, o *options, security transport) (*grpc.ClientConn, error) {
	dialErr := &lastError{}
	dialOpts := []grpc.DialOption{grpc.WithContextDialer(dialErr.dialer)}
	switch {
	case security.insecure:
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	case security.ca != nil:
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(newVerifyingCreds(security.ca, dialErr)))
	case security.creds != nil:
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(security.creds))
	}
	dialOpts = append(dialOpts, o.dialOpts...)
	conn, err := grpc.NewClient(endpoint, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", endpoint, err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.connectTimeout)
	defer cancel()
	conn.Connect()
	for {
		state := conn.GetState()
		switch state {
		case connectivity.Ready:
			return conn, nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			conn.Close()
			return nil, fmt.Errorf("endpoint %s: %w", endpoint, dialErr.or(state.String()))
		}
		if !conn.WaitForStateChange(ctx, state) {
			conn.Close()
			return nil, fmt.Errorf("endpoint %s: %w", endpoint, dialErr.or(ctx.Err().Error()))
		}
	}
}

// lastError records the last dial or TLS handshake error so that a failed endpoint can say why
// (gRPC only reports TRANSIENT_FAILURE).
type lastError struct {
	mu  sync.Mutex
	err error
}

func (l *lastError) set(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}

func (l *lastError) dialer(ctx context.Context, addr string) (net.Conn, error) {
	network := "tcp"
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", path
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		l.set(err)
	}
	return c, err
}

func (l *lastError) or(fallback string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	return errors.New(fallback)
}

// Endpoint returns the endpoint this client is connected to.
func (c *Client) Endpoint() string { return c.endpoint }

// Conn returns the underlying gRPC connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
