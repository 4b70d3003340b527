package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads and parses the configuration file at path; see Parse. An
// invalid file gives ValidationErrors; a file that cannot be read gives an
// error naming it.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes a YAML configuration, fills in defaults and validates it.
// Unknown keys are errors; ${NAME} and ${NAME:-default} are expanded in
// every value from the environment; a secret key such as password may be
// given as password_file instead, read from that file (relative paths are
// relative to the directory of source). Data without a document (empty,
// blank or only comments) is refused: use Default for the defaults.
//
// source names the data (normally its file path). Every problem is reported
// at once, in file order, as ValidationErrors.
func Parse(data []byte, source string) (*Config, error) {
	return parse(data, source, false)
}

func parse(data []byte, source string, allowEmpty bool) (*Config, error) {
	cfg := staticDefaults()
	pos := newPositions()
	d := &decoder{baseDir: filepath.Dir(source), lookup: os.LookupEnv, pos: pos}

	root, err := parseNode(data, source)
	if err != nil {
		return nil, ValidationErrors{err}
	}
	if (root == nil || isNull(root)) && !allowEmpty {
		return nil, ValidationErrors{{Msg: fmt.Sprintf(
			"%s holds no configuration (empty, or only comments): give at least one section; an empty file is refused so that a truncated file cannot start a gateway on the defaults", source)}}
	}
	if root != nil {
		if root.Kind != yaml.MappingNode && !isNull(root) {
			return nil, ValidationErrors{{Line: root.Line, Msg: fmt.Sprintf(
				"%s: the top level must be a mapping of sections (gateway, plcs, device, ...), got %s", source, kindName(root))}}
		}
		d.decode(root, reflect.ValueOf(&cfg).Elem(), "")
	}
	errs := d.errs
	if fe := cfg.applyDerived(); fe != nil {
		fe.Line = pos.lineOf(fe.Path)
		errs = append(errs, fe)
	}
	errs = append(errs, cfg.check(pos)...)
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, errs
	}
	cfg.shareLists()
	cfg.pos = pos
	return &cfg, nil
}

// Validate checks a Config built or changed in code, with the same rules
// Parse applies; problems have no line numbers. It does not fill in
// defaults: start from Default to get them.
func (c *Config) Validate() error {
	if errs := c.check(newPositions()); len(errs) > 0 {
		return errs
	}
	return nil
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseNode parses data into its single document's root node, nil when the
// data holds no document.
func parseNode(data []byte, source string) (*yaml.Node, *FieldError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(err, source, data)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(err, source, data)
	default:
		return nil, &FieldError{Line: extra.Line, Msg: fmt.Sprintf("%s holds more than one YAML document; give one", source)}
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

// syntaxError turns a YAML parser error into a FieldError with its line.
func syntaxError(err error, source string, data []byte) *FieldError {
	msg := err.Error()
	line := 0
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if strings.Contains(msg, "cannot start any token") || strings.Contains(msg, "found a tab") {
		// The parser's words for a tab; say it, on the tab's own line.
		for i, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l[:len(l)-len(strings.TrimLeft(l, " \t"))], "\t") {
				return &FieldError{Line: i + 1, Msg: fmt.Sprintf("%s is not valid YAML: a tab indents line %d; YAML indents with spaces only", source, i+1)}
			}
		}
	}
	return &FieldError{Line: line, Msg: fmt.Sprintf("%s is not valid YAML: %s", source, msg)}
}

// positions remembers, by path, where each key was in the file, and which
// keys already failed to decode.
type positions struct {
	lines  map[string]int
	failed map[string]bool
}

func newPositions() *positions {
	return &positions{lines: map[string]int{}, failed: map[string]bool{}}
}

// ForgetLines drops the line of every key, kept for Problem: with
// thousands of tags they take megabytes for the life of the process. The
// agent calls it once the configuration is built; Problem then gives no
// line. It must not run beside Problem or validation of c.
func (c *Config) ForgetLines() {
	if c.pos != nil {
		c.pos.lines, c.pos.failed = nil, nil
	}
}

// lineOf returns the line of path, or of its nearest enclosing key or list
// element present in the file; 0 if none is.
func (p *positions) lineOf(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// hasFailed reports whether path or an enclosing key already has a decoding
// problem, so that validation does not report it a second time.
func (p *positions) hasFailed(path string) bool {
	for path != "" {
		if p.failed[path] {
			return true
		}
		path = parentPath(path)
	}
	return false
}

// parentPath strips the last key or index: a.b[2].c → a.b[2] → a.b → a.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
