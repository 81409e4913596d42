package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// TokenKind says what a join token admits.
type TokenKind string

// Join token kinds: a manager token joins a scheduler (Raft voter), a worker token an agent.
const (
	KindManager TokenKind = "M"
	KindWorker  TokenKind = "W"
)

// Role is the certificate role a token of this kind is issued.
func (k TokenKind) Role() string {
	switch k {
	case KindManager:
		return RoleScheduler
	case KindWorker:
		return RoleAgent
	}
	return ""
}

const (
	joinTokenPrefix = "ORCH1"
	digestChars     = 52 // base32 of 32 bytes, unpadded
	secretBytes     = 16
	secretChars     = 26 // base32 of 16 bytes, unpadded
	apiTokenPrefix  = "orch_"
	apiTokenBytes   = 32
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func encodeB32(b []byte) string { return strings.ToLower(b32.EncodeToString(b)) }

// decodeB32 decodes exactly n bytes from s (either case) and rejects non-canonical encodings
// (non-zero trailing bits), so a token has one spelling.
func decodeB32(s string, n int) ([]byte, error) {
	b, err := b32.DecodeString(strings.ToUpper(s))
	if err != nil {
		return nil, err
	}
	if len(b) != n {
		return nil, fmt.Errorf("decodes to %d bytes, want %d", len(b), n)
	}
	if encodeB32(b) != strings.ToLower(s) {
		return nil, errors.New("non-canonical base32")
	}
	return b, nil
}

// ErrInvalidToken is wrapped by every ParseJoinToken error.
var ErrInvalidToken = errors.New("invalid join token")

// JoinToken is a parsed join token:
//
//	ORCH1-<M|W>-<base32 SHA-256 of the CA certificate, 52 chars>-<base32 secret, 26 chars>
//
// The digest lets a joining node authenticate the cluster before it trusts anything the
// cluster says (PinnedTLS); the secret authenticates the node to the cluster, which keeps
// only its hash (so a leaked state snapshot does not leak a usable token).
type JoinToken struct {
	Kind     TokenKind
	CADigest string // lowercase base32, as CADigest returns
	Secret   []byte // 16 bytes
}

// NewJoinToken creates a join token of kind pinned to ca. It returns the token to hand to
// operators and the hash of its secret for the cluster to store (compare with Matches).
// Rotating a token is creating a new one and replacing the stored hash.
func NewJoinToken(kind TokenKind, ca *x509.Certificate) (token string, secretHash []byte, err error) {
	if kind != KindManager && kind != KindWorker {
		return "", nil, fmt.Errorf("new join token: unknown kind %q", kind)
	}
	if ca == nil {
		return "", nil, errors.New("new join token: no CA certificate")
	}
	t := JoinToken{Kind: kind, CADigest: CADigest(ca), Secret: make([]byte, secretBytes)}
	if _, err := rand.Read(t.Secret); err != nil {
		return "", nil, fmt.Errorf("new join token: random secret: %w", err)
	}
	return t.String(), t.SecretHash(), nil
}

// ParseJoinToken parses s (surrounding spaces ignored, base32 parts in either case). Errors
// wrap ErrInvalidToken and say which part is wrong; they never echo the secret.
func ParseJoinToken(s string) (JoinToken, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, "-")
	if len(parts) == 0 || parts[0] != joinTokenPrefix {
		return JoinToken{}, fmt.Errorf("%w: does not start with %q", ErrInvalidToken, joinTokenPrefix+"-")
	}
	if len(parts) != 4 {
		return JoinToken{}, fmt.Errorf("%w: want 4 dash-separated parts %s-<M|W>-<CA digest>-<secret>, got %d", ErrInvalidToken, joinTokenPrefix, len(parts))
	}
	kind := TokenKind(parts[1])
	if kind != KindManager && kind != KindWorker {
		return JoinToken{}, fmt.Errorf("%w: kind %q is neither %q (manager) nor %q (worker)", ErrInvalidToken, parts[1], KindManager, KindWorker)
	}
	if len(parts[2]) != digestChars {
		return JoinToken{}, fmt.Errorf("%w: CA digest has %d characters, want %d", ErrInvalidToken, len(parts[2]), digestChars)
	}
	digest, err := decodeB32(parts[2], sha256.Size)
	if err != nil {
		return JoinToken{}, fmt.Errorf("%w: CA digest: %v", ErrInvalidToken, err)
	}
	if len(parts[3]) != secretChars {
		return JoinToken{}, fmt.Errorf("%w: secret has %d characters, want %d", ErrInvalidToken, len(parts[3]), secretChars)
	}
	secret, err := decodeB32(parts[3], secretBytes)
	if err != nil {
		return JoinToken{}, fmt.Errorf("%w: secret: %v", ErrInvalidToken, err)
	}
	return JoinToken{Kind: kind, CADigest: encodeB32(digest), Secret: secret}, nil
}

// String formats the token.
func (t JoinToken) String() string {
	return joinTokenPrefix + "-" + string(t.Kind) + "-" + t.CADigest + "-" + encodeB32(t.Secret)
}

// SecretHash is what the cluster stores for this token. The kind is part of the hash, so a
// worker secret relabelled as a manager token does not match the manager hash.
func (t JoinToken) SecretHash() []byte {
	h := sha256.New()
	h.Write([]byte("orch join token\x00"))
	h.Write([]byte(t.Kind))
	h.Write([]byte{0})
	h.Write(t.Secret)
	return h.Sum(nil)
}

// Matches reports, in constant time, whether the token's secret (and kind) hash to
// secretHash.
func (t JoinToken) Matches(secretHash []byte) bool {
	return subtle.ConstantTimeCompare(t.SecretHash(), secretHash) == 1
}

// PinsCA reports whether the token's digest is ca's.
func (t JoinToken) PinsCA(ca *x509.Certificate) bool {
	return ca != nil && subtle.ConstantTimeCompare([]byte(t.CADigest), []byte(CADigest(ca))) == 1
}

// NewAPIToken creates a client API token, "orch_" followed by 32 random bytes in lowercase
// base32, and the hash to store (HashToken of it). The token itself is shown once and kept
// nowhere.
func NewAPIToken() (token string, hash []byte, err error) {
	b := make([]byte, apiTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("new API token: %w", err)
	}
	token = apiTokenPrefix + encodeB32(b)
	return token, HashToken(token), nil
}

// HashToken is the SHA-256 of token: what the cluster stores and looks a presented API token
// up by. A fast hash is right here: the token has 256 random bits, nothing to brute-force.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// IsAPIToken reports whether s has the shape of an API token (prefix and length), so callers
// can tell a mistyped token from, say, a join token pasted in the wrong place.
func IsAPIToken(s string) bool {
	rest, ok := strings.CutPrefix(s, apiTokenPrefix)
	if !ok {
		return false
	}
	_, err := decodeB32(rest, apiTokenBytes)
	return err == nil
}
