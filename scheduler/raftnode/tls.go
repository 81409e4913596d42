package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"orch/pkg/pki"
)

// raftALPN is the application protocol both ends of a Raft connection negotiate. It keeps a
// gRPC client that dialed the Raft port (or Raft dialing a gRPC port) from getting past the
// handshake: the same certificates are valid on both.
const raftALPN = "orch-raft"

// defaultHandshakeTimeout bounds an inbound TLS handshake, so that a peer that connects and
// stays silent holds a goroutine for at most this long.
const defaultHandshakeTimeout = 10 * time.Second

// TLSStreamLayer is a raft.StreamLayer over mutual TLS: both ends present certificates of
// the cluster CA with the scheduler role, and anything else is refused during the handshake
// (and checked again after it). Use it with raft.NewNetworkTransportWithLogger.
//
// Inbound handshakes run in their own goroutines and only verified connections reach
// Accept: a refused or stalled peer neither blocks other peers nor makes Accept fail (the
// NetworkTransport backs off after every Accept error).
type TLSStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	log       *slog.Logger
	timeout   time.Duration

	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.Mutex
	loopErr error // why the accept loop stopped, when not Close
}

// TLSStreamOption configures a TLSStreamLayer.
type TLSStreamOption func(*TLSStreamLayer)

// WithTLSStreamLogger sets where refused peers are logged (default slog.Default()).
func WithTLSStreamLogger(l *slog.Logger) TLSStreamOption {
	return func(s *TLSStreamLayer) { s.log = l }
}

// WithHandshakeTimeout bounds inbound TLS handshakes (default 10s).
func WithHandshakeTimeout(d time.Duration) TLSStreamOption {
	return func(s *TLSStreamLayer) { s.timeout = d }
}

// NewTLSStreamLayer listens on bindAddr. advertise is the address other servers reach this
// one at (nil: the listener's address, which must then be a specific IP). serverTLS is
// pki.ServerTLS (or ServerTLSWith with a Renewer); clientTLS is pki.ClientTLS (or
// ClientTLSWith) and verifies peers by its ServerName, pki.SchedulerServerName when empty.
// Both are cloned; the layer adds the scheduler-role check and the Raft ALPN protocol.
func NewTLSStreamLayer(bindAddr string, advertise net.Addr, serverTLS, clientTLS *tls.Config, opts ...TLSStreamOption) (*TLSStreamLayer, error) {
	if serverTLS == nil || clientTLS == nil {
		return nil, errors.New("raft TLS transport: server and client TLS configurations are required")
	}
	s := &TLSStreamLayer{
		advertise: advertise,
		server:    requireScheduler(serverTLS, "client"),
		client:    requireScheduler(clientTLS, "server"),
		log:       slog.Default(),
		timeout:   defaultHandshakeTimeout,
		conns:     make(chan net.Conn),
		done:      make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	// pki.ServerTLS verifies client certificates only if given (gRPC admits joiners and
	// token clients); Raft admits nobody without one. Without explicit CA pools crypto/tls
	// would verify against the system roots, so they are required.
	s.server.ClientAuth = tls.RequireAndVerifyClientCert
	if s.server.ClientCAs == nil {
		return nil, errors.New("raft TLS transport: server TLS configuration has no client CA pool")
	}
	if s.client.RootCAs == nil {
		return nil, errors.New("raft TLS transport: client TLS configuration has no root CA pool")
	}
	if s.client.ServerName == "" {
		s.client.ServerName = pki.SchedulerServerName
	}
	addr := advertise
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("raft TLS transport on %s: %w", bindAddr, err)
	}
	if addr == nil {
		addr = ln.Addr()
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft TLS transport on %s: address %s is not advertisable (give an advertise address)", bindAddr, addr)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// requireScheduler clones cfg, adds the Raft ALPN protocol and refuses a peer (the client or
// the server, per side) whose verified certificate does not carry the scheduler role, so the
// refused peer gets a TLS alert rather than a silently closed connection.
func requireScheduler(cfg *tls.Config, side string) *tls.Config {
	c := cfg.Clone()
	c.NextProtos = []string{raftALPN}
	prev := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		return checkSchedulerPeer(cs, side)
	}
	return c
}

func checkSchedulerPeer(cs tls.ConnectionState, side string) error {
	id, role, ok := pki.PeerIdentity(cs)
	if !ok {
		return fmt.Errorf("raft peer (%s) presented no verified cluster certificate", side)
	}
	if role != pki.RoleScheduler {
		return fmt.Errorf("raft peer (%s) %s has role %q, only %q may join Raft", side, id, role, pki.RoleScheduler)
	}
	return nil
}

func (s *TLSStreamLayer) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: back off and go on, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("raft TLS transport: accept", "addr", s.ln.Addr().String(), "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			s.mu.Lock()
			s.loopErr = err
			s.mu.Unlock()
			s.log.Error("raft TLS transport: accept failed", "addr", s.ln.Addr().String(), "err", err)
			s.Close()
			return
		}
		delay = 0
		s.wg.Add(1)
		go s.handshake(c)
	}
}

func (s *TLSStreamLayer) handshake(c net.Conn) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	go func() { // abort the handshake on Close
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	tc := tls.Server(c, s.server)
	if err := tc.HandshakeContext(ctx); err != nil {
		s.log.Warn("raft TLS transport: refused peer", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	cs := tc.ConnectionState()
	if err := checkSchedulerPeer(cs, "client"); err != nil || cs.NegotiatedProtocol != raftALPN {
		s.log.Warn("raft TLS transport: refused peer after handshake", "remote", c.RemoteAddr().String(),
			"err", err, "alpn", cs.NegotiatedProtocol)
		tc.Close()
		return
	}
	select {
	case s.conns <- tc:
	case <-s.done:
		tc.Close()
	}
}

// Accept returns the next inbound connection whose peer is a verified scheduler.
func (s *TLSStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.loopErr != nil {
			return nil, fmt.Errorf("raft TLS transport: %w", s.loopErr)
		}
		return nil, net.ErrClosed
	}
}

// Close stops listening; pending handshakes are aborted. Connections already accepted or
// dialed stay open (the NetworkTransport closes those).
func (s *TLSStreamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.ln.Close()
	})
	return err
}

// Wait blocks until the accept loop and pending handshakes have ended (after Close).
func (s *TLSStreamLayer) Wait() { s.wg.Wait() }

// Addr is the advertised address, or the listener's.
func (s *TLSStreamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}

// Dial connects to another server, completes the handshake within timeout and returns the
// connection only if the server is a verified scheduler of this cluster.
func (s *TLSStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), s.client)
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	cs := c.ConnectionState()
	if err := checkSchedulerPeer(cs, "server"); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	if cs.NegotiatedProtocol != raftALPN {
		c.Close()
		return nil, fmt.Errorf("raft dial %s: peer did not negotiate %q (not a Raft port?)", address, raftALPN)
	}
	return c, nil
}

var _ raft.StreamLayer = (*TLSStreamLayer)(nil)
