package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Renewal timing: a certificate is renewed once a fraction of its lifetime drawn uniformly
// from [renewFraction, renewFraction+renewJitter) has passed, so that a fleet issued at the
// same moment does not renew at the same moment, and a failed renewal has the other half of
// the lifetime to succeed.
const (
	renewFraction = 0.5
	renewJitter   = 0.1
)

// Renewer keeps a node's certificate fresh: Run renews it after half its lifetime and
// GetCertificate / GetClientCertificate hand the current one to every new TLS handshake, so a
// renewal needs no restart. Connections already open keep the certificate they started with.
type Renewer struct {
	get      func() (*tls.Certificate, error)
	renew    func(ctx context.Context) (*tls.Certificate, error)
	now      func() time.Time
	minRetry time.Duration
	maxRetry time.Duration
	log      *slog.Logger

	mu  sync.Mutex
	cur *tls.Certificate
}

// RenewerOption configures a Renewer.
type RenewerOption func(*Renewer)

// WithRetry sets the backoff between failed renewals: it starts at min and doubles up to
// max (defaults 1s and 5m). It is also the shortest time between two renewals.
func WithRetry(min, max time.Duration) RenewerOption {
	return func(r *Renewer) { r.minRetry, r.maxRetry = min, max }
}

// WithRenewLogger sets where renewals and failures are logged (default slog.Default()).
func WithRenewLogger(l *slog.Logger) RenewerOption {
	return func(r *Renewer) { r.log = l }
}

// NewRenewer returns a Renewer. get loads the current certificate (called once, on first use;
// after that the Renewer keeps the latest itself); renew obtains a new one from the cluster
// (and should persist it, so a restart starts from it); now is the clock (time.Now if nil).
// Certificates should carry Leaf; it is parsed when missing.
func NewRenewer(get func() (*tls.Certificate, error), renew func(ctx context.Context) (*tls.Certificate, error), now func() time.Time, opts ...RenewerOption) *Renewer {
	r := &Renewer{get: get, renew: renew, now: now, minRetry: time.Second, maxRetry: 5 * time.Minute}
	for _, o := range opts {
		o(r)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.minRetry <= 0 {
		r.minRetry = time.Second
	}
	if r.maxRetry < r.minRetry {
		r.maxRetry = r.minRetry
	}
	return r
}

// Current returns the certificate new connections use.
func (r *Renewer) Current() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil {
		return r.cur, nil
	}
	c, err := r.get()
	if err != nil {
		return nil, fmt.Errorf("load certificate: %w", err)
	}
	if err := withLeaf(c); err != nil {
		return nil, fmt.Errorf("load certificate: %w", err)
	}
	r.cur = c
	return c, nil
}

// Set replaces the current certificate (for example after the node rejoined with a token).
func (r *Renewer) Set(c *tls.Certificate) error {
	if err := withLeaf(c); err != nil {
		return fmt.Errorf("set certificate: %w", err)
	}
	r.mu.Lock()
	r.cur = c
	r.mu.Unlock()
	return nil
}

// GetCertificate is a tls.Config.GetCertificate callback serving the current certificate.
func (r *Renewer) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.Current() }

// GetClientCertificate is a tls.Config.GetClientCertificate callback presenting the current
// certificate.
func (r *Renewer) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.Current()
}

func withLeaf(c *tls.Certificate) error {
	if c == nil || len(c.Certificate) == 0 {
		return errors.New("empty certificate")
	}
	if c.Leaf != nil {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return fmt.Errorf("parse leaf: %w", err)
	}
	c.Leaf = leaf
	return nil
}

// renewAt is when leaf should be renewed.
func renewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	frac := renewFraction + renewJitter*rand.Float64()
	return leaf.NotBefore.Add(time.Duration(float64(life) * frac))
}

// Run renews the certificate until ctx ends, then returns ctx.Err(). Each certificate is
// renewed after 50-60% of its lifetime; failures are retried with exponential backoff (never
// waiting longer than a quarter of the remaining lifetime) and logged.
func (r *Renewer) Run(ctx context.Context) error {
	justRenewed := false
	backoff := r.minRetry
	for {
		cur, err := r.Current()
		if err != nil {
			r.log.Error("certificate renewal: no current certificate", "err", err, "retry_in", backoff)
			if !sleepCtx(ctx, backoff) {
				return ctx.Err()
			}
			backoff = min(2*backoff, r.maxRetry)
			continue
		}
		wait := renewAt(cur.Leaf).Sub(r.now())
		if justRenewed && wait < r.minRetry {
			// The new certificate is already due (short TTL, capped by the CA's expiry, or
			// clock skew): do not spin.
			wait = r.minRetry
		}
		if !sleepCtx(ctx, wait) {
			return ctx.Err()
		}
		justRenewed = r.renewOnce(ctx, cur.Leaf)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// renewOnce renews, retrying with backoff until it succeeds or ctx ends.
func (r *Renewer) renewOnce(ctx context.Context, old *x509.Certificate) bool {
	backoff := r.minRetry
	for attempt := 1; ; attempt++ {
		c, err := r.renew(ctx)
		if err == nil {
			err = r.Set(c)
		}
		if err == nil {
			r.log.Info("certificate renewed", "node_id", c.Leaf.Subject.CommonName,
				"serial", c.Leaf.SerialNumber.String(), "not_after", c.Leaf.NotAfter)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		delay := backoff
		if left := old.NotAfter.Sub(r.now()) / 4; left < delay {
			delay = max(left, r.minRetry)
		}
		r.log.Warn("certificate renewal failed", "node_id", old.Subject.CommonName, "attempt", attempt,
			"err", err, "retry_in", delay, "expires", old.NotAfter)
		if !sleepCtx(ctx, delay) {
			return false
		}
		backoff = min(2*backoff, r.maxRetry)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
