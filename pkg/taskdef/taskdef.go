// Package taskdef owns the task definition document: it reads ECS task definition JSON into
// orchv1.TaskDefinition (Parse), writes it back (Marshal), checks it against ECS's rules with
// JSON field paths in every message (Validate), reads task definition references (ParseRef),
// and answers the questions other packages ask of a definition (Essential, StopTimeout,
// ContainerReservation, TaskResources, HostPorts).
//
// Users paste task definitions written for Amazon ECS, from the AWS docs or from
// `aws ecs describe-task-definition`; both shapes are accepted verbatim. The proto messages
// carry ECS's JSON names, so the document maps onto them field for field. Parse walks the JSON
// against the proto descriptors itself, rather than handing it to protojson, for three reasons:
// errors must name the JSON path the user wrote (containerDefinitions[0].imagee: unknown
// field), task-level cpu and memory come in ECS's unit forms ("1 vCPU", "2 GB") that protojson
// does not read, and output-only fields of describe output must be accepted and dropped.
package taskdef

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	orchv1 "orch/proto/orch/v1"
)

// ErrInvalid is matched (errors.Is) by every error this package returns for a bad document or
// reference: malformed JSON, unknown fields, failed validation.
var ErrInvalid = errors.New("invalid task definition")

// FieldError is one problem, at the JSON path of the field it concerns
// (containerDefinitions[1].memory). Path is empty for a problem with the whole document.
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) String() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// ValidationError lists every problem found in a task definition, in document order.
type ValidationError struct {
	Errors []FieldError
}

// Error lists the problems one per line, each as "path: message".
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.String()
	}
	return strings.Join(lines, "\n")
}

// Is makes errors.Is(err, ErrInvalid) true for a ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Marshal writes td as ECS task definition JSON: ECS's camelCase names, 2-space indent,
// unpopulated fields left out. Parse reads the result back to an equal message.
func Marshal(td *orchv1.TaskDefinition) ([]byte, error) {
	compact, err := protojson.Marshal(td)
	if err != nil {
		return nil, fmt.Errorf("marshal task definition %q: %w", td.GetFamily(), err)
	}
	// protojson's own layout is deliberately unstable (it varies whitespace between builds);
	// re-indenting gives the same bytes every time, which tests and diffs rely on.
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return nil, fmt.Errorf("marshal task definition %q: indent: %w", td.GetFamily(), err)
	}
	return out.Bytes(), nil
}

// ParseRef reads a task definition reference as ECS accepts it: "family", "family:3", or the
// ARN "arn:aws:ecs:<region>:<account>:task-definition/family:3". Revision 0 means the latest
// ACTIVE revision of the family.
func ParseRef(s string) (family string, revision int32, err error) {
	ref := s
	if strings.HasPrefix(s, "arn:") {
		// arn:<partition>:ecs:<region>:<account>:task-definition/<family>[:<revision>]
		parts := strings.SplitN(s, ":", 6)
		if len(parts) != 6 || parts[2] != "ecs" || !strings.HasPrefix(parts[5], "task-definition/") {
			return "", 0, fmt.Errorf("%w reference %q: not a task definition ARN", ErrInvalid, s)
		}
		ref = strings.TrimPrefix(parts[5], "task-definition/")
	}
	family, rev, hasRev := strings.Cut(ref, ":")
	if !validName(family) {
		return "", 0, fmt.Errorf("%w reference %q: family %s", ErrInvalid, s, nameRule)
	}
	if !hasRev {
		return family, 0, nil
	}
	n, err := strconv.ParseInt(rev, 10, 32)
	if err != nil || n < 1 {
		return "", 0, fmt.Errorf("%w reference %q: revision must be a positive integer", ErrInvalid, s)
	}
	return family, int32(n), nil
}

// nameRule is what ECS allows in family, container and volume names.
const nameRule = "must be 1-255 letters, digits, hyphens or underscores"

func validName(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}
