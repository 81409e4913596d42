package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/arn"
	orchv1 "orch/proto/orch/v1"
)

// writeJSON prints m as the AWS CLI prints a response: camelCase names, 2-space indent, unset
// fields omitted. protojson randomizes its whitespace on purpose, so its compact form is
// re-indented with encoding/json to give stable output.
func writeJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return fmt.Errorf("indent %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// writeJSONLine prints m compactly on one line (JSON Lines, for streams).
func writeJSONLine(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return fmt.Errorf("compact %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// table writes aligned columns; empty cells print as "-".
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			c = "-"
		}
		c = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
		if i > 0 {
			t.tw.Write([]byte{'\t'})
		}
		t.tw.Write([]byte(c))
	}
	t.tw.Write([]byte{'\n'})
}

func (t *table) flush() error { return t.tw.Flush() }

// writeLines prints one value per line (list-* commands in table mode).
func writeLines(w io.Writer, lines []string) error {
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}

// writeFailures prints the failures of a response after a blank line.
func writeFailures(w io.Writer, failures []*orchv1.Failure) error {
	if len(failures) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	t := newTable(w, "FAILURE ARN", "REASON", "DETAIL")
	for _, f := range failures {
		t.row(f.Arn, f.Reason, f.Detail)
	}
	return t.flush()
}

// formatTime prints a timestamp in local time, RFC 3339; unset prints as "".
func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().Local().Format(time.RFC3339)
}

// taskID is the 32-hex id of a task: its id field, else the last segment of its ARN.
func taskID(t *orchv1.Task) string {
	if t.Id != "" {
		return t.Id
	}
	return arn.LastSegment(t.TaskArn)
}

// shortID is the first 8 characters of an id, as progress lines print it.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// familyRevision turns a task definition ARN into "family:revision".
func familyRevision(tdArn string) string {
	if i := strings.LastIndex(tdArn, "task-definition/"); i >= 0 {
		return tdArn[i+len("task-definition/"):]
	}
	return tdArn
}

// taskIP is the task's private address: its ENI, else the ENI attachment's privateIPv4Address,
// else a container's network interface.
func taskIP(t *orchv1.Task) string {
	if t.Eni != nil && t.Eni.Ip != "" {
		return t.Eni.Ip
	}
	for _, at := range t.Attachments {
		for _, d := range at.Details {
			if d.Name == "privateIPv4Address" && d.Value != "" {
				return d.Value
			}
		}
	}
	for _, c := range t.Containers {
		for _, ni := range c.NetworkInterfaces {
			if ni.PrivateIpv4Address != "" {
				return ni.PrivateIpv4Address
			}
		}
	}
	return ""
}

// formatBytes prints a byte count in binary units ("12.5MiB").
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// resourceValue returns the amount of the named resource (CPU, MEMORY) as ECS reports it.
func resourceValue(rs []*orchv1.Resource, name string) (int64, bool) {
	for _, r := range rs {
		if r.Name != name {
			continue
		}
		switch {
		case r.IntegerValue != 0:
			return int64(r.IntegerValue), true
		case r.LongValue != 0:
			return r.LongValue, true
		default:
			return int64(r.DoubleValue), true
		}
	}
	return 0, false
}

// remainingOfRegistered prints "remaining/registered" for one resource.
func remainingOfRegistered(ci *orchv1.ContainerInstance, name string) string {
	rem, okRem := resourceValue(ci.RemainingResources, name)
	reg, okReg := resourceValue(ci.RegisteredResources, name)
	if !okRem && !okReg {
		return ""
	}
	return fmt.Sprintf("%d/%d", rem, reg)
}
