package taskdef

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	orchv1 "orch/proto/orch/v1"
)

// outputOnly are the fields ECS returns from describe-task-definition but does not take in
// RegisterTaskDefinition. Parse accepts them, whatever their value, and drops them, so that
// describe output can be registered again.
var outputOnly = map[string]bool{
	"taskDefinitionArn":  true,
	"revision":           true,
	"status":             true,
	"registeredAt":       true,
	"deregisteredAt":     true,
	"registeredBy":       true,
	"compatibilities":    true,
	"requiresAttributes": true,
}

// maxDepth bounds nesting in the input; real task definitions stay under 10 levels.
const maxDepth = 64

// Parse reads an ECS task definition document and validates it. It accepts the
// RegisterTaskDefinition input (`aws ecs register-task-definition --cli-input-json`, with
// top-level "tags") and the describe-task-definition output wrapper
// {"taskDefinition": {...}, "tags": [...]}. Task-level cpu and memory may be numbers, numeric
// strings or ECS's unit forms ("1 vCPU", "0.25 vcpu", "2 GB", "512 MiB") and come out as
// integer strings in cpu units and MiB. Output-only fields (taskDefinitionArn, revision,
// status, registeredAt, ...) are dropped. Fields ECS does not have are rejected with their
// path. Malformed JSON is reported with its line and column. Every error matches ErrInvalid;
// problems with fields come as a *ValidationError.
func Parse(data []byte) (*orchv1.TaskDefinition, error) {
	v, err := readJSON(data)
	if err != nil {
		return nil, err
	}
	td, wrapped, tagsOutside, errs := decode(v)
	if len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	if err := Validate(td); err != nil {
		var ve *ValidationError
		if wrapped && errors.As(err, &ve) {
			// Point at the fields where the user wrote them: inside "taskDefinition", except
			// the tags, when they came from the wrapper.
			for i := range ve.Errors {
				p := ve.Errors[i].Path
				if tagsOutside && (p == "tags" || strings.HasPrefix(p, "tags[")) {
					continue
				}
				ve.Errors[i].Path = joinPath("taskDefinition", p)
			}
		}
		return nil, err
	}
	return td, nil
}

// decode turns the JSON tree into a TaskDefinition, collecting every unknown field and type
// mismatch. wrapped says the document was describe output; tagsOutside that its tags were
// given next to "taskDefinition" rather than inside it.
func decode(v any) (td *orchv1.TaskDefinition, wrapped, tagsOutside bool, errs []FieldError) {
	d := &decoder{}
	td = &orchv1.TaskDefinition{}
	obj, ok := v.(jsonObject)
	if !ok {
		d.typeErr("", "a JSON object", v)
		return td, false, false, d.errs
	}
	if _, ok := obj.get("taskDefinition"); !ok {
		d.taskDefinition("", obj, td)
		return td, false, false, d.errs
	}
	outer := &orchv1.TaskDefinition{}
	d.members("", obj, func(path, key string, val any) {
		switch key {
		case "taskDefinition":
			d.taskDefinition(path, val, td)
		case "tags":
			d.value(path, val, outer.ProtoReflect(), fieldByJSON(outer, "tags"))
		default:
			d.fail(path, "unknown field")
		}
	})
	if len(outer.Tags) > 0 {
		if len(td.Tags) > 0 {
			d.fail("tags", "given both here and inside taskDefinition")
		}
		td.Tags = outer.Tags
		tagsOutside = true
	}
	return td, true, tagsOutside, d.errs
}

// decoder fills proto messages from a JSON tree, following the proto descriptors.
type decoder struct {
	errs []FieldError
}

func (d *decoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) typeErr(path, want string, got any) {
	d.fail(path, "expected %s, got %s", want, describeJSON(got))
}

// members calls fn for each member of obj in document order, reporting duplicate keys and
// skipping null values (null means "not set", as in protojson).
func (d *decoder) members(path string, obj jsonObject, fn func(path, key string, val any)) {
	seen := make(map[string]bool, len(obj))
	for _, m := range obj {
		p := joinPath(path, m.key)
		if seen[m.key] {
			d.fail(p, "duplicate field")
			continue
		}
		seen[m.key] = true
		if m.val == nil {
			continue
		}
		fn(p, m.key, m.val)
	}
}

// taskDefinition decodes the task definition object itself: it drops output-only fields and
// normalises task-level cpu and memory before the generic walk.
func (d *decoder) taskDefinition(path string, v any, td *orchv1.TaskDefinition) {
	obj, ok := v.(jsonObject)
	if !ok {
		d.typeErr(path, "an object", v)
		return
	}
	kept := make(jsonObject, 0, len(obj))
	for _, m := range obj {
		switch {
		case outputOnly[m.key]:
			continue
		case m.key == "cpu" && m.val != nil:
			if s, ok := d.units(joinPath(path, m.key), m.val, cpuUnits); ok {
				kept = append(kept, member{m.key, s})
			}
		case m.key == "memory" && m.val != nil:
			if s, ok := d.units(joinPath(path, m.key), m.val, memoryUnits); ok {
				kept = append(kept, member{m.key, s})
			}
		default:
			kept = append(kept, m)
		}
	}
	d.message(path, kept, td.ProtoReflect())
}

// message decodes a JSON object into m.
func (d *decoder) message(path string, v any, m protoreflect.Message) {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Struct":
		d.structValue(path, v, m)
		return
	}
	obj, ok := v.(jsonObject)
	if !ok {
		d.typeErr(path, "an object", v)
		return
	}
	fields := m.Descriptor().Fields()
	d.members(path, obj, func(p, key string, val any) {
		// ByJSONName matches ECS's names only; protojson would also take the proto names
		// (container_definitions), which ECS does not.
		fd := fields.ByJSONName(key)
		if fd == nil {
			d.fail(p, "unknown field")
			return
		}
		d.value(p, val, m, fd)
	})
}

// value decodes v into field fd of m.
func (d *decoder) value(path string, v any, m protoreflect.Message, fd protoreflect.FieldDescriptor) {
	switch {
	case fd.IsMap():
		obj, ok := v.(jsonObject)
		if !ok {
			d.typeErr(path, "an object", v)
			return
		}
		mp := m.Mutable(fd).Map()
		seen := make(map[string]bool, len(obj))
		for _, e := range obj {
			p := joinPath(path, e.key)
			if seen[e.key] {
				d.fail(p, "duplicate key")
				continue
			}
			seen[e.key] = true
			if val, ok := d.scalar(p, e.val, fd.MapValue()); ok {
				mp.Set(protoreflect.ValueOfString(e.key).MapKey(), val)
			}
		}
	case fd.IsList():
		arr, ok := v.([]any)
		if !ok {
			d.typeErr(path, "an array", v)
			return
		}
		list := m.Mutable(fd).List()
		for i, e := range arr {
			p := fmt.Sprintf("%s[%d]", path, i)
			if fd.Message() != nil {
				elem := list.NewElement()
				d.message(p, e, elem.Message())
				list.Append(elem)
				continue
			}
			if val, ok := d.scalar(p, e, fd); ok {
				list.Append(val)
			}
		}
	case fd.Message() != nil:
		d.message(path, v, m.Mutable(fd).Message())
	default:
		if val, ok := d.scalar(path, v, fd); ok {
			m.Set(fd, val)
		}
	}
}

// scalar converts a JSON scalar to the field's kind. Integers may also be given as numeric
// strings ("512"), as ECS's JSON tooling often writes them.
func (d *decoder) scalar(path string, v any, fd protoreflect.FieldDescriptor) (protoreflect.Value, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		s, ok := v.(string)
		if !ok {
			d.typeErr(path, "a string", v)
			return protoreflect.Value{}, false
		}
		return protoreflect.ValueOfString(s), true
	case protoreflect.BoolKind:
		b, ok := v.(bool)
		if !ok {
			d.typeErr(path, "true or false", v)
			return protoreflect.Value{}, false
		}
		return protoreflect.ValueOfBool(b), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, ok := d.integer(path, v, math.MinInt32, math.MaxInt32)
		return protoreflect.ValueOfInt32(int32(n)), ok
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, ok := d.integer(path, v, math.MinInt64, math.MaxInt64)
		return protoreflect.ValueOfInt64(n), ok
	}
	// The task definition schema has no other kinds; a new one must be handled above.
	d.fail(path, "field of kind %v is not supported", fd.Kind())
	return protoreflect.Value{}, false
}

func (d *decoder) integer(path string, v any, lo, hi int64) (int64, bool) {
	var text string
	switch x := v.(type) {
	case json.Number:
		text = string(x)
	case string:
		text = strings.TrimSpace(x)
	default:
		d.typeErr(path, "an integer", v)
		return 0, false
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		// 512.0 and 5e2 are integers too; 0.5 is not.
		f, ferr := strconv.ParseFloat(text, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			d.typeErr(path, "an integer", v)
			return 0, false
		}
		n = int64(f)
	}
	if n < lo || n > hi {
		d.fail(path, "%d is out of range", n)
		return 0, false
	}
	return n, true
}

// structValue keeps a free-form object (proxyConfiguration, efsVolumeConfiguration, ...)
// verbatim in a google.protobuf.Struct.
func (d *decoder) structValue(path string, v any, m protoreflect.Message) {
	obj, ok := v.(jsonObject)
	if !ok {
		d.typeErr(path, "an object", v)
		return
	}
	s, err := structpb.NewStruct(plain(obj).(map[string]any))
	if err != nil {
		d.fail(path, "%v", err)
		return
	}
	proto.Merge(m.Interface(), s)
}

// unitKind describes how ECS writes a task-level size: a bare integer, or a number with one of
// the suffixes, each worth mult of the base unit.
type unitKind struct {
	what     string
	suffixes map[string]int
	example  string
}

var (
	// "1 vCPU" or "1 vcpu" = 1024 cpu units.
	cpuUnits = unitKind{what: "cpu units", suffixes: map[string]int{"vcpu": 1024}, example: `256 or "1 vCPU"`}
	// "1 GB" = 1024 MiB (ECS's GB is a GiB); MiB and MB, GiB are taken as the same units.
	memoryUnits = unitKind{what: "MiB", suffixes: map[string]int{"gb": 1024, "gib": 1024, "mb": 1, "mib": 1}, example: `512 or "1 GB"`}
)

// units normalises a task-level cpu or memory value to an integer string. An empty string is
// kept: it means "not set", as in the CLI's skeleton.
func (d *decoder) units(path string, v any, u unitKind) (string, bool) {
	var text string
	switch x := v.(type) {
	case json.Number:
		text = string(x)
	case string:
		text = strings.TrimSpace(x)
		if text == "" {
			return "", true
		}
	default:
		d.typeErr(path, "a number or string", v)
		return "", false
	}
	num, mult := text, 1
	lower := strings.ToLower(text)
	for suffix, m := range u.suffixes {
		if strings.HasSuffix(lower, suffix) {
			num, mult = strings.TrimSpace(text[:len(text)-len(suffix)]), m
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || strings.ContainsAny(num, "eExXpP_") {
		d.fail(path, "expected %s, e.g. %s; got %s", u.what, u.example, describeJSON(v))
		return "", false
	}
	total := f * float64(mult)
	if total != math.Trunc(total) || math.Abs(total) > math.MaxInt32 {
		d.fail(path, "%s is not a whole number of %s", text, u.what)
		return "", false
	}
	return strconv.FormatInt(int64(total), 10), true
}

func fieldByJSON(m proto.Message, name string) protoreflect.FieldDescriptor {
	fd := m.ProtoReflect().Descriptor().Fields().ByJSONName(name)
	if fd == nil {
		panic("taskdef: no field " + name + " in " + string(m.ProtoReflect().Descriptor().FullName()))
	}
	return fd
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	if key == "" {
		return parent
	}
	return parent + "." + key
}

// The JSON tree keeps object members in document order, so that errors come out in the
// order the user wrote the fields, and so that duplicate keys can be seen.
type member struct {
	key string
	val any
}

type jsonObject []member

func (o jsonObject) get(key string) (any, bool) {
	for _, m := range o {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

// plain converts a JSON tree to the map/slice/float64 form structpb takes.
func plain(v any) any {
	switch x := v.(type) {
	case jsonObject:
		m := make(map[string]any, len(x))
		for _, e := range x {
			m[e.key] = plain(e.val)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return v
}

func describeJSON(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "string " + strconv.Quote(x)
	case json.Number:
		return "number " + string(x)
	case bool:
		return strconv.FormatBool(x)
	case jsonObject:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

// readJSON parses data into a tree of jsonObject, []any, string, json.Number, bool and nil.
func readJSON(data []byte) (any, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty document", ErrInvalid)
	}
	// Unmarshal checks the whole document first and reports a syntax error at its absolute
	// offset; the Decoder's token reader below reports some of them relative to the value it
	// was reading.
	if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
		return nil, syntaxError(data, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readValue(dec, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return v, nil
}

func readValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth >= maxDepth {
		return nil, fmt.Errorf("nested more than %d levels deep", maxDepth)
	}
	switch delim {
	case '{':
		obj := jsonObject{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key, ok := kt.(string)
			if !ok {
				return nil, fmt.Errorf("expected an object key, got %v", kt)
			}
			val, err := readValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			obj = append(obj, member{key, val})
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return obj, nil
	case '[':
		arr := []any{}
		for dec.More() {
			val, err := readValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, val)
		}
		if _, err := dec.Token(); err != nil {
			return nil, err
		}
		return arr, nil
	}
	return nil, fmt.Errorf("unexpected %v", delim)
}

// syntaxError reports a JSON syntax error at its line and column (both from 1).
func syntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	msg := se.Error()
	// Offset counts the bytes read up to and including the offending one; at the end of the
	// input it is the input's length.
	off := se.Offset - 1
	if strings.HasPrefix(msg, "unexpected end of JSON input") {
		off, msg = int64(len(data)), "unexpected end of input"
	}
	off = max(0, min(off, int64(len(data))))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return fmt.Errorf("%w: line %d, column %d: %s", ErrInvalid, line, col, msg)
}
