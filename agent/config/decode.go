package config

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// decoder walks a yaml.Node tree alongside the Config it fills, so that every
// problem is reported with its path and line and decoding goes on after the
// first one. It is strict: a key with no field is an error.
type decoder struct {
	// baseDir is the directory relative *_file paths are resolved against.
	baseDir string
	// lookup reads an environment variable for ${NAME} expansion.
	lookup func(string) (string, bool)
	// pos records the line of every key and list element decoded, by path.
	pos *positions
	// errs collects the problems found so far.
	errs ValidationErrors
	// merges resolves merge keys, each merged mapping once.
	merges merger
	// budget counts the values decoded, so that aliases of aliases cannot
	// make a small file expand exponentially.
	budget int
}

// maxValues is the most values one file may expand to, aliases included:
// far above a plant of a thousand PLCs with a thousand tags.
const maxValues = 1 << 24

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// fail records a problem with the key at path and marks it so validation
// does not report the same key again.
func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.pos.failed[path] = true
	d.errs = append(d.errs, &FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// decode stores node n into v, the field at path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	// An alias may point at a node that contains it; decoding still ends
	// because every step descends one level of the Config types, which are
	// not recursive.
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if d.budget++; d.budget > maxValues {
		if d.budget == maxValues+1 {
			d.fail(path, n.Line, "the file expands to more than %d values (aliases of aliases?)", maxValues)
		}
		return
	}
	if isNull(n) {
		// An empty value keeps the default, but for a list: `brokers:`
		// means what `brokers: []` means, no element.
		if v.Kind() == reflect.Slice {
			v.Set(reflect.Zero(v.Type()))
		}
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		d.decodeUnmarshaler(n, v, path)
		return
	}
	switch v.Type() {
	case plcType:
		d.decodePLC(n, v.Addr().Interface().(*PLC), path)
		return
	case configType:
		d.decodeRoot(n, v.Addr().Interface().(*Config))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		before := len(d.errs)
		d.decode(n, nv.Elem(), path)
		if len(d.errs) == before {
			v.Set(nv)
		}
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Int, reflect.Int64:
		s, ok := d.scalar(n, path, "an integer")
		if !ok {
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
		if err != nil {
			d.fail(path, n.Line, "expected an integer, got %q", cut(s))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		s, ok := d.scalar(n, path, "a number")
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(path, n.Line, "expected a finite number, got %q", cut(s))
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		s, ok := d.scalar(n, path, "true or false")
		if !ok {
			return
		}
		switch s {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			d.fail(path, n.Line, "expected true or false, got %q", cut(s))
		}
	default:
		// Only reachable if a field of an unsupported kind is added to Config.
		d.fail(path, n.Line, "BUG: config field of kind %s cannot be decoded", v.Kind())
	}
}

// scalar returns the env-expanded value of a scalar node, or records a
// problem saying what was expected instead.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n.Line, "expected %s, got %s", want, kindName(n))
		return "", false
	}
	s, err := expandEnv(n.Value, d.lookup)
	if err != nil {
		d.fail(path, n.Line, "%v", err)
		return "", false
	}
	return s, true
}

// decodeUnmarshaler decodes a Duration or ByteSize after env expansion.
func (d *decoder) decodeUnmarshaler(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.ScalarNode {
		s, ok := d.scalar(n, path, "")
		if !ok {
			return
		}
		cp := *n
		cp.Value = s
		n = &cp
	}
	if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
		d.fail(path, n.Line, "%v", err)
	}
}

// decodeSlice decodes a list. Each new element starts from itemDefaults. A
// list of strings may also be written as one comma-separated string, which
// lets a single ${ENV} give several brokers.
func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	et := v.Type().Elem()
	if n.Kind == yaml.ScalarNode && et.Kind() == reflect.String {
		s, ok := d.scalar(n, path, "a list")
		if !ok {
			return
		}
		out := reflect.MakeSlice(v.Type(), 0, 4)
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = reflect.Append(out, reflect.ValueOf(part))
			}
		}
		v.Set(out)
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(path, n.Line, "expected a list, got %s", kindName(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		d.pos.lines[ip] = item.Line
		elem := out.Index(i)
		setDefaults(elem)
		d.decode(item, elem, ip)
	}
	v.Set(out)
}

// decodeStruct decodes a mapping into a struct: known keys into their
// fields, <key>_file into a secret field, anything else is an error.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	d.decodeFields(n, path, []reflect.Value{v}, nil)
}

// extraKeys handles the keys of a mapping that no target struct has (the
// root's sink sections): known reports whether it took the key, names
// lists the keys it takes, for suggestions.
type extraKeys struct {
	take  func(key *yaml.Node, value *yaml.Node, path string) (known bool)
	names []string
}

// decodeFields decodes the mapping n into the fields of the structs
// targets, each key into the first struct that has it; keys none has go to
// extra, or are errors.
func (d *decoder) decodeFields(n *yaml.Node, path string, targets []reflect.Value, extra *extraKeys) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, "expected a mapping of keys, got %s", kindName(n))
		return
	}
	type fieldRef struct {
		field  fieldInfo
		target reflect.Value
	}
	lists := make([]fieldList, len(targets))
	for i, t := range targets {
		lists[i] = fieldsOf(t.Type())
	}
	// names lists the keys accepted here, for suggestions: needed only
	// for a key that is not one of them.
	names := func() []string {
		var out []string
		for _, fl := range lists {
			out = append(out, fl.names()...)
		}
		if extra != nil {
			out = append(out, extra.names...)
		}
		return out
	}
	byName := func(name string) (fieldRef, bool) {
		for i, fl := range lists {
			if f, ok := fl.byName(name); ok {
				return fieldRef{f, targets[i]}, true
			}
		}
		return fieldRef{}, false
	}
	seen := map[string]int{}
	type fileRef struct {
		ref   fieldRef
		key   *yaml.Node
		value *yaml.Node
	}
	var files []fileRef
	pairs, err := d.merges.pairs(n)
	if err != nil {
		d.fail(path, n.Line, "%v", err)
		return
	}
	for _, p := range pairs {
		k := p.key
		if k.Kind != yaml.ScalarNode {
			d.fail(path, k.Line, "expected a key name, got %s", kindName(k))
			continue
		}
		name := k.Value
		kp := joinPath(path, name)
		if first, dup := seen[name]; dup {
			d.fail(kp, k.Line, "key repeated (first at line %d)", first)
			continue
		}
		seen[name] = k.Line
		d.pos.lines[kp] = k.Line
		if f, ok := byName(name); ok {
			d.decode(p.value, f.target.Field(f.field.index), kp)
			continue
		}
		if base, ok := strings.CutSuffix(name, fileSuffix); ok {
			if f, ok := byName(base); ok && f.field.secret {
				files = append(files, fileRef{ref: f, key: k, value: p.value})
				continue
			}
		}
		if extra != nil && extra.take(k, p.value, kp) {
			continue
		}
		msg := fmt.Sprintf("unknown key %q", cut(name))
		if s := suggest(name, names()); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		d.fail(kp, k.Line, "%s", msg)
	}
	for _, fr := range files {
		f := fr.ref.field
		kp := joinPath(path, f.name+fileSuffix)
		if _, both := seen[f.name]; both {
			d.fail(kp, fr.key.Line, "%s and %s%s are both set; give one", f.name, f.name, fileSuffix)
			continue
		}
		d.pos.lines[joinPath(path, f.name)] = fr.key.Line
		var file string
		if !isNull(fr.value) {
			s, ok := d.scalar(fr.value, kp, "a file path")
			if !ok {
				continue
			}
			file = s
		}
		secret, err := d.readSecret(file)
		if err != nil {
			d.fail(kp, fr.key.Line, "%v", err)
			d.pos.failed[joinPath(path, f.name)] = true
			continue
		}
		fr.ref.target.Field(f.index).SetString(secret)
	}
}

var (
	plcType    = reflect.TypeFor[PLC]()
	configType = reflect.TypeFor[Config]()
)

// decodeRoot decodes the top-level mapping: the common sections into
// their fields, each sink section into its plug-in's Settings.
func (d *decoder) decodeRoot(n *yaml.Node, c *Config) {
	var sectionNames []string
	for _, s := range c.Sinks {
		sectionNames = append(sectionNames, s.Section)
	}
	extra := &extraKeys{names: sectionNames, take: func(k, v *yaml.Node, path string) bool {
		s := c.sink(k.Value)
		if s == nil {
			return false
		}
		common := sinkSection{}
		targets := []reflect.Value{reflect.ValueOf(&common).Elem(), reflect.ValueOf(s.Settings).Elem()}
		if isNull(v) {
			return true
		}
		d.decodeFields(aliased(v), path, targets, nil)
		if common.Enabled != nil {
			s.Enabled = *common.Enabled
		}
		return true
	}}
	d.decodeFields(n, "", []reflect.Value{reflect.ValueOf(c).Elem()}, extra)
}

// decodePLC decodes one plcs entry: name, driver and enabled into p, every
// other key into the Settings of the driver plug-in the driver key names.
// With no such plug-in, only the driver key is reported.
func (d *decoder) decodePLC(n *yaml.Node, p *PLC, path string) {
	n = aliased(n)
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, "expected a mapping of keys, got %s", kindName(n))
		return
	}
	pairs, err := d.merges.pairs(n)
	if err != nil {
		d.fail(path, n.Line, "%v", err)
		return
	}
	var driverKey, driverValue *yaml.Node
	for _, pr := range pairs {
		if pr.key.Kind == yaml.ScalarNode && pr.key.Value == "driver" {
			driverKey, driverValue = pr.key, aliased(pr.value)
		}
	}
	targets := []reflect.Value{reflect.ValueOf(p).Elem()}
	var plugin DriverPlugin
	found := false
	if driverKey != nil && driverValue.Kind == yaml.ScalarNode && !isNull(driverValue) {
		if name, err := expandEnv(driverValue.Value, d.lookup); err == nil && name != "" {
			if plugin, found = lookupDriver(name); !found {
				kp := joinPath(path, "driver")
				d.pos.lines[kp] = driverKey.Line
				d.fail(kp, driverKey.Line, "%s", unknownDriver(cut(name)))
			}
		}
	}
	if !found {
		// Decode only the common keys: the others belong to a driver this
		// build does not know, and the driver key's problem says so.
		common := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
		for _, pr := range pairs {
			switch pr.key.Value {
			case "name", "enabled", "driver":
				common.Content = append(common.Content, pr.key, pr.value)
			}
		}
		n = common
	} else {
		p.Settings = plugin.New()
		targets = append(targets, reflect.ValueOf(p.Settings).Elem())
	}
	d.decodeFields(n, path, targets, nil)
}

// aliased follows aliases to the node they name.
func aliased(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// setDefaults gives a new list element its defaults, when its type has
// any (Defaulter).
func setDefaults(elem reflect.Value) {
	if !elem.CanAddr() {
		return
	}
	if d, ok := elem.Addr().Interface().(Defaulter); ok {
		d.SetDefaults()
	}
}

// fileSuffix turns a secret's key into the key naming a file that holds it.
const fileSuffix = "_file"

// readSecret reads a secret from a file, relative paths from baseDir, and
// trims the trailing newline editors and echo add.
func (d *decoder) readSecret(file string) (string, error) {
	if file == "" {
		return "", fmt.Errorf("empty file path")
	}
	if !filepath.IsAbs(file) {
		file = filepath.Join(d.baseDir, file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("cannot read secret file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", file)
	}
	return s, nil
}

type nodePair struct{ key, value *yaml.Node }

// merger resolves YAML merge keys (<<: *anchor). It remembers each
// mapping's resolved pairs, so that merges of merges cost linear time, and
// the mappings being resolved, to detect a mapping merged into itself.
type merger struct {
	done     map[*yaml.Node][]nodePair
	visiting map[*yaml.Node]bool
}

// pairs returns a mapping's key/value pairs with merge keys resolved:
// explicit keys win over merged ones, and earlier merge sources over later
// ones.
func (m *merger) pairs(n *yaml.Node) ([]nodePair, error) {
	if p, ok := m.done[n]; ok {
		return p, nil
	}
	if m.visiting[n] {
		return nil, fmt.Errorf("a merge key merges the mapping on line %d into itself", n.Line)
	}
	if m.done == nil {
		m.done, m.visiting = map[*yaml.Node][]nodePair{}, map[*yaml.Node]bool{}
	}
	m.visiting[n] = true
	defer delete(m.visiting, n)
	var explicit, merged []nodePair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			srcs, err := mergeSources(v, 0)
			if err != nil {
				return nil, err
			}
			for _, src := range srcs {
				pairs, err := m.pairs(src)
				if err != nil {
					return nil, err
				}
				merged = append(merged, pairs...)
			}
			continue
		}
		explicit = append(explicit, nodePair{k, v})
	}
	out := explicit
	if len(merged) > 0 {
		have := map[string]bool{}
		for _, p := range explicit {
			have[p.key.Value] = true
		}
		for _, p := range merged {
			if !have[p.key.Value] {
				have[p.key.Value] = true
				out = append(out, p)
			}
		}
	}
	m.done[n] = out
	return out, nil
}

// mergeSources returns the mappings named by a merge key's value: a
// mapping or a list of mappings, through aliases.
func mergeSources(v *yaml.Node, depth int) ([]*yaml.Node, error) {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	switch {
	case v.Kind == yaml.MappingNode:
		return []*yaml.Node{v}, nil
	case v.Kind == yaml.SequenceNode && depth == 0:
		var out []*yaml.Node
		for _, item := range v.Content {
			srcs, err := mergeSources(item, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, srcs...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("merge key on line %d needs a mapping or a list of mappings", v.Line)
}

// isNull reports whether n is an empty value (`key:`, `~` or `null`).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// kindName describes a node for messages: a mapping, a list or its value.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(cut(n.Value))
	}
	return "nothing"
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// fieldInfo describes one struct field as the YAML file names it.
type fieldInfo struct {
	name   string
	index  int
	secret bool
	doc    string
	field  reflect.StructField
}

type fieldList []fieldInfo

// fieldsOf lists t's fields that have a yaml name, in declaration order.
func fieldsOf(t reflect.Type) fieldList {
	if fl, ok := fieldLists.Load(t); ok {
		return fl.(fieldList)
	}
	fl := listFields(t)
	fieldLists.Store(t, fl)
	return fl
}

// fieldLists caches fieldsOf by type: a file with thousands of tags
// decodes and checks their struct thousands of times, and listing the
// fields each time allocated hundreds of megabytes at start.
var fieldLists sync.Map // reflect.Type → fieldList, shared: never modified

func listFields(t reflect.Type) fieldList {
	var out fieldList
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		out = append(out, fieldInfo{
			name:   name,
			index:  i,
			secret: f.Tag.Get("secret") == "true",
			doc:    f.Tag.Get("doc"),
			field:  f,
		})
	}
	return out
}

func (fl fieldList) byName(name string) (fieldInfo, bool) {
	for _, f := range fl {
		if f.name == name {
			return f, true
		}
	}
	return fieldInfo{}, false
}

// names lists the keys a mapping accepts, secrets' *_file keys included.
func (fl fieldList) names() []string {
	var out []string
	for _, f := range fl {
		out = append(out, f.name)
		if f.secret {
			out = append(out, f.name+fileSuffix)
		}
	}
	return out
}

// suggest returns the candidate closest to s when it is close enough to be
// a likely typo (case differences, up to two edits), or "".
func suggest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if strings.EqualFold(s, c) {
			return c
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestDist && d < len(c) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance, so a swap of two letters ("flaot") counts as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
