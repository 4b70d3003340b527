package config

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// ReferenceMarkdown returns the configuration reference, README.md of this
// package: every key with its type, default and meaning, built from the
// same structs, tags and rules as JSONSchema and validation.
func ReferenceMarkdown() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(referenceIntro)
	r := &refGen{}
	def := reflect.ValueOf(staticDefaults())
	for _, f := range fieldsOf(def.Type()) {
		r.section(f.name, f.doc, def.Field(f.index))
	}
	for _, s := range r.sections {
		b.WriteString(s)
	}
	b.WriteString(referenceRules)
	if r.err != nil {
		return nil, r.err
	}
	return b.Bytes(), nil
}

type refGen struct {
	sections []string
	err      error
}

// section writes the table of the key named path whose value (and default)
// is v: a struct's keys, or a list element's keys under path[].
func (r *refGen) section(path, doc string, v reflect.Value) {
	// Reserve this section's place first so that the sections of nested
	// lists come after it.
	idx := len(r.sections)
	r.sections = append(r.sections, "")
	var rows [][4]string
	head := path
	if v.Kind() == reflect.Slice {
		head = path + "[]"
		item := reflect.New(v.Type().Elem()).Elem()
		if d := itemDefaults(item.Interface()); d != nil {
			item = reflect.ValueOf(d)
		}
		v = item
	}
	rows = r.rows(head, v, rows)
	var b strings.Builder
	fmt.Fprintf(&b, "\n### `%s`\n\n", head)
	if doc != "" {
		fmt.Fprintf(&b, "%s.\n\n", capitalize(doc))
	}
	b.WriteString("| key | type | default | description |\n|---|---|---|---|\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row[0], row[1], row[2], row[3])
	}
	r.sections[idx] = b.String()
}

// rows appends a row for every key of the struct v under path; nested
// structs are flattened, lists of structs get their own section.
func (r *refGen) rows(path string, v reflect.Value, rows [][4]string) [][4]string {
	t := v.Type()
	for _, f := range fieldsOf(t) {
		fv := v.Field(f.index)
		fp := path + "." + f.name
		key := t.Name() + "." + f.field.Name
		ft := f.field.Type
		switch {
		case ft.Kind() == reflect.Struct && ft != durationType && ft != byteSizeType:
			rows = r.rows(fp, fv, rows)
			continue
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			rows = append(rows, [4]string{code(fp), "list", "", mdEscape(sentence(f.doc)) + fmt.Sprintf(" See [`%s[]`](#%s).", fp, anchor(fp+"[]"))})
			r.section(fp, f.doc, fv)
			continue
		}
		desc := []string{sentence(f.doc)}
		if c := constraintText(key, f.name); c != "" {
			desc = append(desc, c)
		}
		if f.secret {
			desc = append(desc, fmt.Sprintf("*Secret*: shown as %s by /config.", RedactedValue))
		}
		rows = append(rows, [4]string{code(fp), typeText(ft), r.defaultText(key, fp, fv), mdEscape(strings.Join(desc, " "))})
		if f.secret {
			rows = append(rows, [4]string{code(fp + fileSuffix), "string (path)", "",
				mdEscape(fmt.Sprintf("file holding %s instead: read at load, trailing newline trimmed, relative to the config file's directory. Not together with %s.", f.name, f.name))})
		}
	}
	return rows
}

// constraintText states the value set, range or bound validation applies.
func constraintText(key, name string) string {
	if key == tagTypeField {
		return fmt.Sprintf("One of %s, or string(n) with n from 1 to %d.", codeList(tagBaseTypes), maxStringLen)
	}
	var parts []string
	if e, ok := enums[key]; ok {
		s := "One of " + codeList(e.values)
		if e.emptyOK {
			s += ", or empty"
		}
		parts = append(parts, s+".")
	}
	if rg, ok := ranges[key]; ok {
		if rg.hasMax {
			parts = append(parts, fmt.Sprintf("From %s to %s.", fmtNum(rg.min), fmtNum(rg.max)))
		} else {
			parts = append(parts, fmt.Sprintf("At least %s.", fmtNum(rg.min)))
		}
	}
	if m, ok := durationMins[key]; ok {
		parts = append(parts, capitalize(durationMin(m))+".")
	}
	if m, ok := byteSizeMins[key]; ok {
		parts = append(parts, fmt.Sprintf("At least %s.", m))
	}
	return strings.Join(parts, " ")
}

func typeText(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t == byteSizeType:
		return "size"
	case t.Kind() == reflect.Pointer:
		return typeText(t.Elem())
	case t.Kind() == reflect.Slice:
		return "list of " + typeText(t.Elem()) + "s"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "integer"
	case t.Kind() == reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}

// defaultText formats the default of the field key (Type.Field) at path
// (as the reference writes paths) whose static default is v.
func (r *refGen) defaultText(key, path string, v reflect.Value) string {
	if required[key] {
		return "*required*"
	}
	if d, ok := derivedDefaults[path]; ok {
		return "*" + mdEscape(d) + "*"
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			r.err = fmt.Errorf("config reference: %s has neither a static nor a derived default", path)
			return ""
		}
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case Duration:
		return code(x.String())
	case ByteSize:
		return code(x.String())
	case string:
		if x == "" {
			return ""
		}
		return code(x)
	case []string:
		if len(x) == 0 {
			return ""
		}
		return code(strings.Join(x, ", "))
	case float64:
		return code(fmtNum(x))
	case int:
		return code(strconv.Itoa(x))
	case int64:
		return code(strconv.FormatInt(x, 10))
	case bool:
		return code(strconv.FormatBool(x))
	}
	r.err = fmt.Errorf("config reference: no default format for %s of type %s", path, v.Type())
	return ""
}

func code(s string) string { return "`" + strings.ReplaceAll(s, "|", `\|`) + "`" }

func codeList(vals []string) string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = "`" + v + "`"
	}
	return strings.Join(out, ", ")
}

// mdEscape escapes what a Markdown table cell would misread: pipes, and
// angle brackets that would pass for HTML tags.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", `\<`, ">", `\>`).Replace(s)
}

// sentence ends s with a full stop.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasSuffix(s, ".") {
		return s
	}
	return s + "."
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// anchor is the GitHub heading anchor of a heading that is just `text`.
func anchor(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}
