package config

import (
	"bytes"
	"fmt"
	"maps"
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
	r := &refGen{derived: maps.Clone(derivedDefaults)}
	defaults := staticDefaults()
	def := reflect.ValueOf(defaults)
	for _, f := range fieldsOf(def.Type()) {
		if f.name == "plcs" {
			r.section("plcs", f.doc+"; the keys besides name, driver and enabled depend on the driver (below)", "", reflect.ValueOf(PLC{Enabled: ptr(true)}))
			continue
		}
		r.section(f.name, f.doc, "", def.Field(f.index))
	}
	for _, d := range Drivers() {
		st := d.New()
		r.plugin(st, "plcs[]")
		r.section("plcs[]", fmt.Sprintf("with `driver: %s`: %s", d.Name, d.Summary), d.Name, reflect.ValueOf(st).Elem())
	}
	for _, sk := range defaults.Sinks {
		p, _ := lookupSink(sk.Section)
		r.plugin(sk.Settings, sk.Section)
		r.section(sk.Section, fmt.Sprintf("the %s sink: %s", sk.Name, p.Summary), "", reflect.ValueOf(sinkSection{Enabled: ptr(sk.Enabled)}), reflect.ValueOf(sk.Settings).Elem())
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
	// derived maps reference paths to the text of their derived defaults.
	derived map[string]string
	err     error
}

// plugin adds a plug-in's derived defaults, whose paths are relative to
// its part of the file at path.
func (r *refGen) plugin(s Settings, path string) {
	d, ok := s.(DerivedDocs)
	if !ok {
		return
	}
	if r.derived == nil {
		r.derived = map[string]string{}
	}
	for k, v := range d.DerivedDefaults() {
		r.derived[path+"."+k] = v
	}
}

// section writes the table of the key named path whose values (and
// defaults) are vs: a struct's keys, or a list element's keys under
// path[]. variant, when set, names the driver whose keys these are.
func (r *refGen) section(path, doc, variant string, vs ...reflect.Value) {
	// Reserve this section's place first so that the sections of nested
	// lists come after it.
	idx := len(r.sections)
	r.sections = append(r.sections, "")
	var rows [][4]string
	head := path
	for _, v := range vs {
		if v.Kind() == reflect.Slice {
			head = path + "[]"
			item := reflect.New(v.Type().Elem()).Elem()
			setDefaults(item)
			v = item
		}
		rows = r.rows(head, v, rows)
	}
	var b strings.Builder
	if variant != "" {
		fmt.Fprintf(&b, "\n### `%s` (driver: %s)\n\n", head, variant)
	} else {
		fmt.Fprintf(&b, "\n### `%s`\n\n", head)
	}
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
		rule := ruleOf(t, f.index)
		ft := f.field.Type
		switch {
		case ft.Kind() == reflect.Struct && ft != durationType && ft != byteSizeType:
			rows = r.rows(fp, fv, rows)
			continue
		case ft == reflect.TypeFor[[]PLC]():
			rows = append(rows, [4]string{code(fp), "list", "", mdEscape(sentence(f.doc)) + fmt.Sprintf(" See [`%s[]`](#%s).", fp, anchor(fp+"[]"))})
			continue
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			rows = append(rows, [4]string{code(fp), "list", "", mdEscape(sentence(f.doc)) + fmt.Sprintf(" See [`%s[]`](#%s).", fp, anchor(fp+"[]"))})
			r.section(fp, f.doc, "", fv)
			continue
		}
		desc := []string{sentence(f.doc)}
		if c := constraintText(rule); c != "" {
			desc = append(desc, c)
		}
		if f.secret {
			desc = append(desc, fmt.Sprintf("*Secret*: shown as %s by /config.", RedactedValue))
		}
		rows = append(rows, [4]string{code(fp), typeText(ft), r.defaultText(rule, fp, fv), mdEscape(strings.Join(desc, " "))})
		if f.secret {
			rows = append(rows, [4]string{code(fp + fileSuffix), "string (path)", "",
				mdEscape(fmt.Sprintf("file holding %s instead: read at load, trailing newline trimmed, relative to the config file's directory. Not together with %s.", f.name, f.name))})
		}
	}
	return rows
}

// constraintText states the value set, range or bound a rule applies.
func constraintText(r rule) string {
	var parts []string
	if r.enum != nil {
		s := "One of " + codeList(r.enum)
		if r.emptyOK {
			s += ", or empty"
		}
		parts = append(parts, s+".")
	}
	if r.rng != nil {
		if r.rng.hasMax {
			parts = append(parts, fmt.Sprintf("From %s to %s.", fmtNum(r.rng.min), fmtNum(r.rng.max)))
		} else {
			parts = append(parts, fmt.Sprintf("At least %s.", fmtNum(r.rng.min)))
		}
	}
	if r.minDur > 0 {
		parts = append(parts, capitalize(durationMin(r.minDur))+".")
	}
	if r.minBytes > 0 {
		parts = append(parts, fmt.Sprintf("At least %s.", r.minBytes))
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

// defaultText formats the default of the field with rule at path
// (as the reference writes paths) whose static default is v.
func (r *refGen) defaultText(rule rule, path string, v reflect.Value) string {
	if rule.required {
		return "*required*"
	}
	if d, ok := r.derived[path]; ok {
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
