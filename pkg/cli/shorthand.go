package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// readStructParam reads a structure-valued parameter into m the way the AWS CLI does: JSON when
// the value (or the file:// it names) starts with "{", else the AWS CLI's shorthand syntax
// ("maximumPercent=200,deploymentCircuitBreaker={enable=true,rollback=true}"), whose keys are
// the members' JSON names.
func readStructParam(cmd *cobra.Command, flag, value string, m proto.Message) error {
	data, err := readParam(cmd, flag, value)
	if err != nil {
		return err
	}
	text := strings.TrimSpace(string(data))
	if strings.HasPrefix(text, "{") {
		if err := protojson.Unmarshal([]byte(text), m); err != nil {
			return usageErrorf(flag, "invalid JSON: %v", err)
		}
		return nil
	}
	vals, err := parseShorthand(text)
	if err != nil {
		return usageErrorf(flag, "%v", err)
	}
	if err := setShorthand(m.ProtoReflect(), vals, ""); err != nil {
		return usageErrorf(flag, "%v", err)
	}
	return nil
}

// parseShorthand parses the AWS CLI's shorthand syntax for a structure: key=value pairs
// separated by commas, where a value is a scalar, a structure in braces or a list in brackets;
// a scalar may be quoted ('...' or "...") to hold the special characters ,={}[]. Scalars come
// back as strings, structures as map[string]any, lists as []any.
func parseShorthand(s string) (map[string]any, error) {
	p := &shorthandParser{s: s}
	return p.structure(0)
}

type shorthandParser struct {
	s string
	i int
}

func (p *shorthandParser) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid shorthand at column %d of %q: %s", p.i+1, p.s, fmt.Sprintf(format, args...))
}

func (p *shorthandParser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n') {
		p.i++
	}
}

// structure reads key=value pairs up to end ('}' inside braces, which it leaves unread), or
// with end 0 up to the end of the input.
func (p *shorthandParser) structure(end byte) (map[string]any, error) {
	m := map[string]any{}
	for {
		p.skipSpace()
		start := p.i
		for p.i < len(p.s) && !strings.ContainsRune("=,{}[]", rune(p.s[p.i])) {
			p.i++
		}
		key := strings.TrimSpace(p.s[start:p.i])
		if key == "" {
			return nil, p.errorf("expected a key")
		}
		if p.i >= len(p.s) || p.s[p.i] != '=' {
			return nil, p.errorf("expected '=' after %q", key)
		}
		p.i++
		if _, dup := m[key]; dup {
			return nil, p.errorf("%q given twice", key)
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		m[key] = v
		p.skipSpace()
		switch {
		case p.i >= len(p.s):
			if end != 0 {
				return nil, p.errorf("missing '%c'", end)
			}
			return m, nil
		case p.s[p.i] == end:
			return m, nil
		case p.s[p.i] == ',':
			p.i++
		default:
			return nil, p.errorf("expected ',' after the value of %q", key)
		}
	}
}

func (p *shorthandParser) value() (any, error) {
	p.skipSpace()
	if p.i >= len(p.s) {
		return "", nil
	}
	switch c := p.s[p.i]; c {
	case '{':
		p.i++
		m, err := p.structure('}')
		if err != nil {
			return nil, err
		}
		p.i++ // '}'
		return m, nil
	case '[':
		p.i++
		var list []any
		p.skipSpace()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return list, nil
		}
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			list = append(list, v)
			p.skipSpace()
			switch {
			case p.i >= len(p.s):
				return nil, p.errorf("missing ']'")
			case p.s[p.i] == ']':
				p.i++
				return list, nil
			case p.s[p.i] == ',':
				p.i++
			default:
				return nil, p.errorf("expected ',' or ']' in a list")
			}
		}
	case '\'', '"':
		p.i++
		end := strings.IndexByte(p.s[p.i:], c)
		if end < 0 {
			return nil, p.errorf("missing closing %c", c)
		}
		v := p.s[p.i : p.i+end]
		p.i += end + 1
		return v, nil
	}
	start := p.i
	for p.i < len(p.s) && !strings.ContainsRune(",{}[]=", rune(p.s[p.i])) {
		p.i++
	}
	if p.i < len(p.s) && strings.ContainsRune("{[=", rune(p.s[p.i])) {
		return nil, p.errorf("unexpected %q in a value (quote the value to use it)", p.s[p.i])
	}
	return strings.TrimSpace(p.s[start:p.i]), nil
}

// setShorthand sets the fields of m named (by their JSON names) in vals; path prefixes the
// names in errors ("deploymentCircuitBreaker.enable").
func setShorthand(m protoreflect.Message, vals map[string]any, path string) error {
	fields := m.Descriptor().Fields()
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := k
		if path != "" {
			name = path + "." + k
		}
		fd := fields.ByJSONName(k)
		if fd == nil {
			var valid []string
			for i := 0; i < fields.Len(); i++ {
				valid = append(valid, fields.Get(i).JSONName())
			}
			return fmt.Errorf("unknown parameter %q, must be one of: %s", name, strings.Join(valid, ", "))
		}
		v := vals[k]
		switch {
		case fd.IsMap():
			return fmt.Errorf("%s: maps cannot be given in shorthand; use JSON", name)
		case fd.IsList():
			items, ok := v.([]any)
			if !ok {
				items = []any{v} // a single element without brackets, as the AWS CLI allows
			}
			list := m.Mutable(fd).List()
			for i, item := range items {
				ev, err := shorthandValue(fd, item, fmt.Sprintf("%s[%d]", name, i), list.NewElement)
				if err != nil {
					return err
				}
				list.Append(ev)
			}
		default:
			fv, err := shorthandValue(fd, v, name, func() protoreflect.Value { return m.NewField(fd) })
			if err != nil {
				return err
			}
			m.Set(fd, fv)
		}
	}
	return nil
}

// shorthandValue converts one parsed shorthand value to the type of fd; newMsg makes an empty
// message of fd's type.
func shorthandValue(fd protoreflect.FieldDescriptor, v any, name string, newMsg func() protoreflect.Value) (protoreflect.Value, error) {
	if fd.Kind() == protoreflect.MessageKind {
		sub, ok := v.(map[string]any)
		if !ok {
			return protoreflect.Value{}, fmt.Errorf("%s: expected a structure {key=value,...}", name)
		}
		mv := newMsg()
		if err := setShorthand(mv.Message(), sub, name); err != nil {
			return protoreflect.Value{}, err
		}
		return mv, nil
	}
	s, ok := v.(string)
	if !ok {
		return protoreflect.Value{}, fmt.Errorf("%s: expected a single value", name)
	}
	bad := func(what string) (protoreflect.Value, error) {
		return protoreflect.Value{}, fmt.Errorf("%s: invalid %s %q", name, what, s)
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BoolKind:
		switch strings.ToLower(s) {
		case "true":
			return protoreflect.ValueOfBool(true), nil
		case "false":
			return protoreflect.ValueOfBool(false), nil
		}
		return bad("boolean (true or false)")
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return bad("integer")
		}
		return protoreflect.ValueOfInt32(int32(n)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad("integer")
		}
		return protoreflect.ValueOfInt64(n), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return bad("integer")
		}
		return protoreflect.ValueOfUint32(uint32(n)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return bad("integer")
		}
		return protoreflect.ValueOfUint64(n), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return bad("number")
		}
		if fd.Kind() == protoreflect.FloatKind {
			return protoreflect.ValueOfFloat32(float32(f)), nil
		}
		return protoreflect.ValueOfFloat64(f), nil
	case protoreflect.EnumKind:
		ev := fd.Enum().Values().ByName(protoreflect.Name(s))
		if ev == nil {
			return bad("value")
		}
		return protoreflect.ValueOfEnum(ev.Number()), nil
	}
	return protoreflect.Value{}, fmt.Errorf("%s: cannot be given in shorthand; use JSON", name)
}
