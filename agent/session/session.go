// Package session keeps the agent's connection to the schedulers: register, open the session
// stream with a hello, apply the assignments it receives, send heartbeats, and send every task
// status the agent has not delivered yet. Every connection is mutual TLS (Config.Credentials):
// the schedulers know the agent by its certificate. It reconnects with backoff, trying each
// scheduler address in turn; after a reconnect it replays all current statuses (the FSM ignores
// what it already has, since status only moves forward).
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/timestamppb"

	orchv1 "orch/proto/orch/v1"
)

// Handler is the agent side of a session.
type Handler interface {
	// Registration returns what the agent registers as; HostID is empty the first time.
	Registration() *orchv1.RegisterHostRequest
	// Registered records the scheduler's answer (the host id to keep).
	Registered(*orchv1.RegisterHostResponse) error
	// KnownTaskIDs lists the tasks the agent has state for.
	KnownTaskIDs() []string
	// Assign applies assignments from the scheduler.
	Assign(*orchv1.Assignments)
	// TakeStatuses returns the statuses not yet sent (all of them when all is true) and marks
	// them sent.
	TakeStatuses(all bool) []*orchv1.TaskStatus
	// StatusesReady fires when there are statuses to send.
	StatusesReady() <-chan struct{}
	// Usage returns resource usage to report, or nil.
	Usage() *orchv1.TaskUsageReport
}

// Config of a session.
type Config struct {
	Endpoints         []string
	Handler           Handler
	Credentials       credentials.TransportCredentials // required: mutual TLS with the agent's certificate
	Log               *slog.Logger
	HeartbeatInterval time.Duration // default 5s
	UsageInterval     time.Duration // default 10s
	DialOptions       []grpc.DialOption
}

// Keepalive is how an agent finds a scheduler that is gone without closing the connection (its
// machine died, the network split): after 10 s without hearing from it (the scheduler does not
// answer heartbeats, so an idle session pings) it pings, and drops the connection if no answer
// comes within 5 s. A scheduler process that dies closes its connections at once.
var Keepalive = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}

// Run keeps a session open until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.Endpoints) == 0 {
		return errors.New("session: no scheduler endpoints")
	}
	if cfg.Credentials == nil {
		return errors.New("session: no transport credentials (the agent's mutual TLS identity)")
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 5 * time.Second
	}
	if cfg.UsageInterval == 0 {
		cfg.UsageInterval = 10 * time.Second
	}
	backoff := 100 * time.Millisecond
	for i := 0; ; i++ {
		ep := cfg.Endpoints[i%len(cfg.Endpoints)]
		start := time.Now()
		err := once(ctx, cfg, ep)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 30*time.Second {
			backoff = 100 * time.Millisecond
		}
		cfg.Log.Warn("scheduler session ended; reconnecting", "endpoint", ep, "err", err, "backoff", backoff)
		jitter := time.Duration(rand.Int64N(int64(backoff)/2 + 1))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff + jitter):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func once(ctx context.Context, cfg Config, endpoint string) error {
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(cfg.Credentials),
		grpc.WithKeepaliveParams(Keepalive),
	}, cfg.DialOptions...)
	conn, err := grpc.NewClient(endpoint, opts...)
	if err != nil {
		return fmt.Errorf("dial %s: %w", endpoint, err)
	}
	defer conn.Close()
	client := orchv1.NewAgentServiceClient(conn)
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	resp, err := client.Register(rctx, cfg.Handler.Registration())
	cancel()
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	if err := cfg.Handler.Registered(resp); err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Session(sctx)
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	hello := &orchv1.SessionHello{HostId: resp.GetHost().GetId(), KnownTaskIds: cfg.Handler.KnownTaskIDs()}
	if err := stream.Send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Hello{Hello: hello}}); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	cfg.Log.Info("scheduler session open", "endpoint", endpoint, "host_id", hello.GetHostId())
	errc := make(chan error, 2)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- fmt.Errorf("receive: %w", err)
				return
			}
			if a := m.GetAssignments(); a != nil {
				cfg.Handler.Assign(a)
			}
		}
	}()
	go func() { errc <- sendLoop(sctx, cfg, stream) }()
	return <-errc
}

func sendLoop(ctx context.Context, cfg Config, stream orchv1.AgentService_SessionClient) error {
	hb := time.NewTicker(cfg.HeartbeatInterval)
	defer hb.Stop()
	usage := time.NewTicker(cfg.UsageInterval)
	defer usage.Stop()
	all := true // replay everything on a new session
	for {
		if sts := cfg.Handler.TakeStatuses(all); len(sts) > 0 {
			msg := &orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Status{Status: &orchv1.TaskStatusReport{Tasks: sts}}}
			if err := stream.Send(msg); err != nil {
				// Not delivered: the next session replays everything.
				return fmt.Errorf("send status: %w", err)
			}
		}
		all = false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-cfg.Handler.StatusesReady():
		case <-hb.C:
			msg := &orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Heartbeat{Heartbeat: &orchv1.Heartbeat{SentAt: timestamppb.Now()}}}
			if err := stream.Send(msg); err != nil {
				return fmt.Errorf("heartbeat: %w", err)
			}
		case <-usage.C:
			if u := cfg.Handler.Usage(); u != nil && len(u.GetTasks()) > 0 {
				if err := stream.Send(&orchv1.AgentMessage{Msg: &orchv1.AgentMessage_Usage{Usage: u}}); err != nil {
					return fmt.Errorf("send usage: %w", err)
				}
			}
		}
	}
}
