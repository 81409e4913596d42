package api

// Tagging, as ECS: TagResource, UntagResource and ListTagsForResource on clusters, task
// definitions and tasks by ARN. Each change is one Raft entry (fsm.CmdTagResource), so a change
// that was acknowledged is in the log of a majority and survives the loss of the leader. The
// request is checked here (shape, ECS's limits on keys and values); the FSM checks that the
// resource exists and the 50-tag limit against the state the entry applies to.

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
)

// tagChars is ECS's pattern for tag keys and values: letters, numbers, spaces and _ . : / = + - @.
var tagChars = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

const (
	maxTagKeyLen   = 128 // characters, as ECS counts them
	maxTagValueLen = 256
)

// WithConsistentRead sets the barrier a consistent read (ListTagsForResource with consistent)
// passes before reading the local store: on the leader, it confirms leadership and that the
// store has applied every entry committed before the read began. Without it, consistent reads
// are served locally, which is only right for a single scheduler.
func WithConsistentRead(fn func(ctx context.Context) error) Opt {
	return func(s *Server) { s.readBarrier = fn }
}

// consistentRead runs the read barrier, if any.
func (s *Server) consistentRead(ctx context.Context) error {
	if s.readBarrier == nil {
		return nil
	}
	return s.readBarrier(ctx)
}

// TagResource implements orchv1.OrchServer: it adds tags to a resource or replaces the values
// of keys it already has.
func (s *Server) TagResource(ctx context.Context, req *orchv1.TagResourceRequest) (*orchv1.TagResourceResponse, error) {
	if err := checkResourceARN(req.GetResourceArn()); err != nil {
		return nil, err
	}
	tags := req.GetTags()
	if len(tags) == 0 {
		return nil, invalid("tags: at least one tag is required")
	}
	if err := validateTags(tags); err != nil {
		return nil, err
	}
	_, err := s.raft.Apply(ctx, fsm.CmdTagResource, &orchv1.TagResourceCommand{ResourceArn: req.GetResourceArn(), Tags: tags})
	if err != nil {
		return nil, toStatus(err)
	}
	return &orchv1.TagResourceResponse{}, nil
}

// UntagResource implements orchv1.OrchServer: it removes the given keys; keys the resource
// does not have are ignored, as in ECS.
func (s *Server) UntagResource(ctx context.Context, req *orchv1.UntagResourceRequest) (*orchv1.UntagResourceResponse, error) {
	if err := checkResourceARN(req.GetResourceArn()); err != nil {
		return nil, err
	}
	keys := req.GetTagKeys()
	if len(keys) == 0 {
		return nil, invalid("tagKeys: at least one key is required")
	}
	if len(keys) > fsm.MaxTagsPerResource {
		return nil, invalid("tagKeys: at most %d keys, got %d", fsm.MaxTagsPerResource, len(keys))
	}
	for i, k := range keys {
		if err := checkTagKey(k); err != nil {
			return nil, invalid("tagKeys[%d]: %v", i, err)
		}
	}
	_, err := s.raft.Apply(ctx, fsm.CmdTagResource, &orchv1.TagResourceCommand{ResourceArn: req.GetResourceArn(), Untag: keys})
	if err != nil {
		return nil, toStatus(err)
	}
	return &orchv1.UntagResourceResponse{}, nil
}

// ListTagsForResource implements orchv1.OrchServer. It reads the local store; with consistent
// set it first passes the read barrier (the forwarding layer sends such reads to the leader).
func (s *Server) ListTagsForResource(ctx context.Context, req *orchv1.ListTagsForResourceRequest) (*orchv1.ListTagsForResourceResponse, error) {
	if err := checkResourceARN(req.GetResourceArn()); err != nil {
		return nil, err
	}
	if req.GetConsistent() {
		if err := s.consistentRead(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	// The store is read after the barrier, so the read sees every write acknowledged before.
	tags, err := fsm.ResourceTags(s.store.Read(), s.arns, req.GetResourceArn())
	if err != nil {
		return nil, toStatus(err)
	}
	return &orchv1.ListTagsForResourceResponse{Tags: tags}, nil
}

func checkResourceARN(s string) error {
	if s == "" {
		return invalid("resourceArn: required")
	}
	if _, err := fsm.ParseResourceARN(s); err != nil {
		return toStatus(err)
	}
	return nil
}

// validateTags applies ECS's rules to a list of tags, wherever tags are given (TagResource,
// CreateCluster, RunTask): at most 50, each key valid and given once, each value valid.
func validateTags(tags []*orchv1.Tag) error {
	if len(tags) > fsm.MaxTagsPerResource {
		return invalid("tags: at most %d tags per resource, got %d", fsm.MaxTagsPerResource, len(tags))
	}
	seen := make(map[string]bool, len(tags))
	for i, t := range tags {
		if err := checkTagKey(t.GetKey()); err != nil {
			return invalid("tags[%d].key: %v", i, err)
		}
		if err := checkTagValue(t.GetValue()); err != nil {
			return invalid("tags[%d].value: %v", i, err)
		}
		if seen[t.GetKey()] {
			return invalid("tags[%d].key: %q is given twice", i, t.GetKey())
		}
		seen[t.GetKey()] = true
	}
	return nil
}

// checkTagKey applies ECS's rules to a key: 1-128 characters of the allowed set, not starting
// with the reserved "aws:" in any case.
func checkTagKey(k string) error {
	switch n := utf8.RuneCountInString(k); {
	case !utf8.ValidString(k):
		return fmt.Errorf("%q is not valid UTF-8", k)
	case n == 0:
		return fmt.Errorf("required")
	case n > maxTagKeyLen:
		return fmt.Errorf("%d characters, at most %d are allowed", n, maxTagKeyLen)
	case strings.HasPrefix(strings.ToLower(k), "aws:"):
		return fmt.Errorf("%q: keys starting with aws: are reserved", k)
	case !tagChars.MatchString(k):
		return fmt.Errorf("%q: only letters, numbers, spaces and _ . : / = + - @ are allowed", k)
	}
	return nil
}

func checkTagValue(v string) error {
	switch n := utf8.RuneCountInString(v); {
	case !utf8.ValidString(v):
		return fmt.Errorf("%q is not valid UTF-8", v)
	case n > maxTagValueLen:
		return fmt.Errorf("%d characters, at most %d are allowed", n, maxTagValueLen)
	case !tagChars.MatchString(v):
		return fmt.Errorf("%q: only letters, numbers, spaces and _ . : / = + - @ are allowed", v)
	}
	return nil
}
