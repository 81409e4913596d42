package state

import "errors"

// Sentinel errors shared by the FSM and the API; the API converts them to gRPC codes once, at
// the edge.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
)
