package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"orch/pkg/client"
	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
	"orch/test/harness"
)

// schedulers is three orch-schedulers on loopback forming one Raft cluster (--bootstrap-expect
// 3), the setup of the control-plane figures (ha.go) and of scheduling throughput (sched.go).
// As in production, they share a cluster CA made for the run and speak mutual TLS to each
// other; the API bootstrap (harness.Bootstrap) gives the API token and the join tokens, and
// conns verify the schedulers against the CA and send the token with every call.
type schedulers struct {
	dir     string // work dir: the CA, each server's data dir and log
	bin     string // orch-scheduler
	servers []*haServer
	creds   harness.Credentials
	conns   map[string]*grpc.ClientConn // by server id
}

type haServer struct {
	id, grpc, http, raft, dir string
	args                      []string
	p                         *process
}

// formTimeout bounds the wait for three new schedulers to elect a leader and bootstrap.
const formTimeout = 30 * time.Second

// startAttempts is how often startSchedulers tries when a scheduler exits while they form: a
// free port can be taken by someone else between being found and being bound.
const startAttempts = 3

// startSchedulers starts three schedulers in a new dir under workDirRoot (os.TempDir() if
// "") and bootstraps them. On error what was started is removed again; otherwise close does.
func startSchedulers(ctx context.Context, binDir, workDirRoot string, logf func(string, ...any)) (*schedulers, error) {
	for attempt := 1; ; attempt++ {
		s, err := tryStartSchedulers(ctx, binDir, workDirRoot, logf)
		if !errors.Is(err, errSchedulerExited) || attempt == startAttempts || ctx.Err() != nil {
			return s, err
		}
		logf("schedulers: %v; starting them again", err)
	}
}

// errSchedulerExited is a scheduler that exited while the three formed a cluster.
var errSchedulerExited = errors.New("a scheduler exited")

func tryStartSchedulers(ctx context.Context, binDir, workDirRoot string, logf func(string, ...any)) (_ *schedulers, err error) {
	bin := filepath.Join(binDir, "orch-scheduler")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("orch-scheduler in %s: %w (run make build)", binDir, err)
	}
	dir, err := os.MkdirTemp(workDirRoot, "orch-bench-schedulers-*")
	if err != nil {
		return nil, err
	}
	s := &schedulers{dir: dir, bin: bin, conns: map[string]*grpc.ClientConn{}}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	ca, caCert, caKey, err := writeCA(dir)
	if err != nil {
		return nil, err
	}
	var join []string
	taken := map[int]bool{} // a port just found free and closed again can be found again
	for i := range 3 {
		srv := &haServer{id: fmt.Sprint("s", i+1), dir: filepath.Join(dir, fmt.Sprint("s", i+1))}
		for _, a := range []*string{&srv.grpc, &srv.http, &srv.raft} {
			p, err := harness.FreeLoopbackPort()
			for err == nil && taken[p] {
				p, err = harness.FreeLoopbackPort()
			}
			if err != nil {
				return nil, err
			}
			taken[p] = true
			*a = fmt.Sprintf("127.0.0.1:%d", p)
		}
		join = append(join, srv.grpc)
		s.servers = append(s.servers, srv)
	}
	for _, srv := range s.servers {
		srv.args = []string{"--data-dir", srv.dir, "--node-id", srv.id, "--grpc-addr", srv.grpc, "--http-addr", srv.http,
			"--raft-addr", srv.raft, "--bootstrap-expect", "3", "--ca-cert", caCert, "--ca-key", caKey, "--log-level", "warn"}
		for _, j := range join {
			srv.args = append(srv.args, "--join", j)
		}
		if err := s.start(srv); err != nil {
			return nil, err
		}
		logf("scheduler %s: API %s, profiles at http://%s/debug/pprof/", srv.id, srv.grpc, srv.http)
	}
	// The API bootstrap, through whichever server answers once they have formed; given up as
	// soon as one of them exits.
	bctx, cancel := context.WithTimeout(ctx, formTimeout)
	exited := make(chan *haServer, 1)
	for _, srv := range s.servers {
		go func() {
			select {
			case <-srv.p.done:
				select {
				case exited <- srv:
				default:
				}
				cancel()
			case <-bctx.Done():
			}
		}()
	}
	s.creds, err = harness.Bootstrap(bctx, s.servers[0].dir, join...)
	cancel()
	select {
	case srv := <-exited:
		return nil, s.withLogs(fmt.Errorf("%w: %s: %v", errSchedulerExited, srv.id, srv.p.wait()))
	default:
	}
	if err != nil {
		return nil, s.withLogs(fmt.Errorf("the three schedulers did not form a cluster: %w", err))
	}
	tlsConf := pki.ClientTLSWith(ca, nil, "")
	for _, srv := range s.servers {
		c, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
			grpc.WithPerRPCCredentials(client.Bearer(s.creds.Token)))
		if err != nil {
			return nil, err
		}
		s.conns[srv.id] = c
	}
	return s, nil
}

// start (re)starts srv's process with its arguments.
func (s *schedulers) start(srv *haServer) error {
	p, err := startProcess(filepath.Join(s.dir, srv.id+".log"), s.bin, srv.args...)
	if err != nil {
		return err
	}
	srv.p = p
	return nil
}

// server returns the server with the id.
func (s *schedulers) server(id string) *haServer {
	for _, srv := range s.servers {
		if srv.id == id {
			return srv
		}
	}
	return nil
}

// endpoints returns the servers' API addresses, the one with id first.
func (s *schedulers) endpoints(first string) []string {
	var eps []string
	for _, srv := range s.servers {
		if srv.id == first {
			eps = append([]string{srv.grpc}, eps...)
		} else {
			eps = append(eps, srv.grpc)
		}
	}
	return eps
}

// leader returns the id of the server a majority names leader.
func (s *schedulers) leader(ctx context.Context) (string, error) {
	return findLeader(ctx, s.conns)
}

// withLogs adds the tail of every server's log to err: the logs go with the work dir.
func (s *schedulers) withLogs(err error) error {
	var b strings.Builder
	for _, srv := range s.servers {
		fmt.Fprintf(&b, "\ntail of %s's log:\n%s", srv.id, harness.TailFile(filepath.Join(s.dir, srv.id+".log"), 10))
	}
	return fmt.Errorf("%w%s", err, b.String())
}

// close stops the servers and removes the work dir.
func (s *schedulers) close() {
	for _, c := range s.conns {
		c.Close()
	}
	for _, srv := range s.servers {
		if srv.p != nil {
			srv.p.stop(5 * time.Second)
		}
	}
	os.RemoveAll(s.dir)
}

// findLeader asks the servers who leads; a majority answer is needed.
func findLeader(ctx context.Context, conns map[string]*grpc.ClientConn) (string, error) {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		votes := map[string]int{}
		for _, c := range conns {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			r, err := orchv1.NewOperatorClient(c).RaftListPeers(cctx, &orchv1.RaftListPeersRequest{})
			cancel()
			if err != nil {
				continue
			}
			for _, p := range r.GetServers() {
				if p.GetLeader() {
					votes[p.GetId()]++
				}
			}
		}
		for id, v := range votes {
			if v >= 2 {
				return id, nil
			}
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
	return "", errors.New("no leader agreed on by a majority")
}
