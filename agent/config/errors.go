package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// FieldError is one problem in a configuration file: the key it concerns,
// the line it is on and what is wrong.
type FieldError struct {
	// Path names the key, e.g. plcs[1].tags[3].type. It is empty for a
	// problem with the file as a whole, such as a YAML syntax error.
	Path string
	// Line is the 1-based line of the key, or of the enclosing section when
	// the key is missing; 0 when unknown (a Config built in code).
	Line int
	// Msg says what is wrong. It never contains a secret's value; Error
	// also redacts the credentials of any URL it quotes.
	Msg string
}

// Error formats the problem as `path: msg (line N)`.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(RedactURLs(e.Msg))
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// ValidationErrors is every problem found in one configuration, in file
// order. Parse and Load return it (not wrapped) when a file is invalid.
type ValidationErrors []*FieldError

// Error prints one problem per line.
func (es ValidationErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems, so errors.As can reach a
// *FieldError.
func (es ValidationErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors puts problems in file order; problems without a line go last
// and keep the order they were found in.
func sortErrors(es ValidationErrors) {
	sort.SliceStable(es, func(i, j int) bool {
		li, lj := es[i].Line, es[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
}

// maxShown is the longest value a message quotes whole; longer values are
// cut, so that a 10 MB topic does not fill the journal.
const maxShown = 80

// cut shortens a value quoted in a message to maxShown bytes, saying how
// long it was.
func cut(s string) string {
	if len(s) <= maxShown {
		return s
	}
	i := maxShown
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:i], len(s))
}

// Cut shortens a value quoted in a message to a readable length, saying
// how long it was; plug-ins quote values through it.
func Cut(s string) string { return cut(s) }

// Problem returns err as the problem of the key at path (for what only
// building the pipeline finds out: a certificate file that does not parse,
// a state directory that is not writable), with the key's line when c came
// from a file. The result is ValidationErrors, so that validate and run
// report it as a configuration problem like any other.
func (c *Config) Problem(path string, err error) error {
	var ve ValidationErrors
	if errors.As(err, &ve) {
		return err
	}
	line := 0
	if c.pos != nil {
		line = c.pos.lineOf(path)
	}
	return ValidationErrors{{Path: path, Line: line, Msg: err.Error()}}
}
