package pki

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sealed format (all integers big-endian):
//
//	magic    "ORCHSEAL"  8 bytes
//	version  1           1 byte
//	kdf      1           1 byte  (1 = PBKDF2-HMAC-SHA256)
//	iter     uint32      4 bytes
//	saltLen  uint8       1 byte
//	salt                 saltLen bytes
//	nonce                12 bytes
//	ciphertext || GCM tag
//
// The whole header (magic through nonce) is the GCM additional data, so any change to it
// is detected like a change to the ciphertext. The key is PBKDF2-HMAC-SHA256(passphrase,
// salt, iter) -> 32 bytes for AES-256-GCM. A fresh salt and nonce are drawn for every seal, so
// the same passphrase never reuses a (key, nonce) pair.

const (
	sealMagic   = "ORCHSEAL"
	sealVersion = 1
	kdfPBKDF2   = 1
	saltSize    = 16
	nonceSize   = 12
	// SealIterations is the PBKDF2-HMAC-SHA256 iteration count Seal uses (OWASP 2023
	// guidance for PBKDF2-SHA256).
	SealIterations = 600_000
	// maxIterations bounds what Open accepts, so that a forged header cannot make it spin
	// for minutes before failing.
	maxIterations = 20 * SealIterations
	headerFixed   = len(sealMagic) + 1 + 1 + 4 + 1
)

var (
	// ErrWrongPassphrase is returned by Open and UnmarshalCA when authentication fails: the
	// passphrase is wrong or the sealed bytes were modified (AES-GCM cannot tell which).
	ErrWrongPassphrase = errors.New("wrong passphrase, or the sealed data was modified")
	// ErrNotSealed is returned by Open for input that is not in the sealed format.
	ErrNotSealed = errors.New("not orch sealed data")
	// ErrEmptyPassphrase is returned when sealing or opening with an empty passphrase.
	ErrEmptyPassphrase = errors.New("passphrase is empty")
)

// Seal encrypts plaintext with AES-256-GCM under a key derived from passphrase with
// PBKDF2-HMAC-SHA256 (SealIterations rounds, random 16-byte salt, random nonce). The output
// starts with a header naming the format and KDF parameters; Open reverses it.
func Seal(plaintext, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("seal: %w", ErrEmptyPassphrase)
	}
	hdr := make([]byte, 0, headerFixed+saltSize+nonceSize)
	hdr = append(hdr, sealMagic...)
	hdr = append(hdr, sealVersion, kdfPBKDF2)
	hdr = binary.BigEndian.AppendUint32(hdr, SealIterations)
	hdr = append(hdr, saltSize)
	random := make([]byte, saltSize+nonceSize)
	if _, err := rand.Read(random); err != nil {
		return nil, fmt.Errorf("seal: random salt and nonce: %w", err)
	}
	hdr = append(hdr, random...)
	salt, nonce := random[:saltSize], random[saltSize:]
	aead, err := sealAEAD(passphrase, salt, SealIterations)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := make([]byte, len(hdr), len(hdr)+len(plaintext)+aead.Overhead())
	copy(out, hdr)
	return aead.Seal(out, nonce, plaintext, hdr), nil
}

// Open decrypts what Seal produced. A wrong passphrase or any modification of the sealed
// bytes returns ErrWrongPassphrase; input that is not in the format returns ErrNotSealed.
func Open(sealed, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("open sealed data: %w", ErrEmptyPassphrase)
	}
	if len(sealed) < headerFixed || !bytes.Equal(sealed[:len(sealMagic)], []byte(sealMagic)) {
		return nil, fmt.Errorf("open sealed data: %w (missing %q header)", ErrNotSealed, sealMagic)
	}
	p := len(sealMagic)
	version, kdf := sealed[p], sealed[p+1]
	iter := binary.BigEndian.Uint32(sealed[p+2:])
	saltLen := int(sealed[p+6])
	if version != sealVersion {
		return nil, fmt.Errorf("open sealed data: unsupported format version %d (this build reads %d)", version, sealVersion)
	}
	if kdf != kdfPBKDF2 {
		return nil, fmt.Errorf("open sealed data: unsupported key derivation %d", kdf)
	}
	if iter == 0 || iter > maxIterations {
		return nil, fmt.Errorf("open sealed data: key derivation iterations %d out of range 1..%d", iter, maxIterations)
	}
	if saltLen < 8 {
		return nil, fmt.Errorf("open sealed data: salt of %d bytes is too short", saltLen)
	}
	hdrLen := headerFixed + saltLen + nonceSize
	if len(sealed) < hdrLen+16 {
		return nil, fmt.Errorf("open sealed data: %w (truncated: %d bytes)", ErrNotSealed, len(sealed))
	}
	salt := sealed[headerFixed : headerFixed+saltLen]
	nonce := sealed[headerFixed+saltLen : hdrLen]
	aead, err := sealAEAD(passphrase, salt, int(iter))
	if err != nil {
		return nil, fmt.Errorf("open sealed data: %w", err)
	}
	pt, err := aead.Open(nil, nonce, sealed[hdrLen:], sealed[:hdrLen])
	if err != nil {
		return nil, fmt.Errorf("open sealed data: %w", ErrWrongPassphrase)
	}
	return pt, nil
}

func sealAEAD(passphrase, salt []byte, iter int) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha256.New, string(passphrase), salt, iter, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}
