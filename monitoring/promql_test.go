package monitoring

import (
	"fmt"
	"strings"
	"unicode"
)

// selector is one vector selector of a PromQL expression: a metric name and
// its label matchers.
type selector struct {
	name     string
	matchers []matcher
}

// matcher is one label matcher, such as state="backing_off".
type matcher struct {
	label, op, value string
}

// notMetrics are the identifiers of PromQL that are not metric names when
// they are not followed by "(": aggregation operators (sum by (...) (...)),
// set and comparison keywords, modifiers and special float values.
var notMetrics = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
	"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true,
	"quantile": true, "limitk": true, "limit_ratio": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// labelListKeywords are followed by a parenthesised list of label names.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// selectors returns the vector selectors of a PromQL expression. It is a
// tokenizer, not a parser: it knows enough of the grammar for the rules and
// dashboard of this folder (functions, aggregations with by/without,
// binary operators, ranges, offsets, Grafana's $variables inside matchers
// and ranges), and reports what it cannot read as an error.
func selectors(expr string) ([]selector, error) {
	var out []selector
	rs := []rune(expr)
	i := 0
	skipSpace := func() {
		for i < len(rs) && unicode.IsSpace(rs[i]) {
			i++
		}
	}
	for i < len(rs) {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case r == '"' || r == '\'' || r == '`':
			end := closingQuote(rs, i)
			if end < 0 {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			i = end + 1
		case r == '[':
			end := indexRune(rs, i, ']')
			if end < 0 {
				return nil, fmt.Errorf("unterminated range at offset %d", i)
			}
			i = end + 1
		case r == '{':
			return nil, fmt.Errorf("selector without a metric name at offset %d", i)
		case unicode.IsDigit(r) || (r == '.' && i+1 < len(rs) && unicode.IsDigit(rs[i+1])):
			// A number or a duration (offset 5m): digits, letters, dots.
			for i < len(rs) && (unicode.IsLetter(rs[i]) || unicode.IsDigit(rs[i]) || rs[i] == '.') {
				i++
			}
		case isIdentStart(r):
			start := i
			for i < len(rs) && isIdentPart(rs[i]) {
				i++
			}
			word := string(rs[start:i])
			skipSpace()
			next := rune(0)
			if i < len(rs) {
				next = rs[i]
			}
			lower := strings.ToLower(word)
			switch {
			case labelListKeywords[lower]:
				if next == '(' {
					end := indexRune(rs, i, ')')
					if end < 0 {
						return nil, fmt.Errorf("unterminated label list after %s", word)
					}
					i = end + 1
				}
			case next == '(' || notMetrics[lower]:
				// A function or an aggregation: its arguments are read next.
			default:
				sel := selector{name: word}
				if next == '{' {
					end := indexRune(rs, i, '}')
					if end < 0 {
						return nil, fmt.Errorf("unterminated matchers of %s", word)
					}
					ms, err := parseMatchers(string(rs[i+1 : end]))
					if err != nil {
						return nil, fmt.Errorf("%s: %w", word, err)
					}
					sel.matchers = ms
					i = end + 1
				}
				out = append(out, sel)
			}
		default:
			// Operators and parentheses.
			i++
		}
	}
	return out, nil
}

// parseMatchers reads the inside of {...}: label op "value", comma-separated.
func parseMatchers(s string) ([]matcher, error) {
	var out []matcher
	rs := []rune(s)
	i := 0
	for {
		for i < len(rs) && (unicode.IsSpace(rs[i]) || rs[i] == ',') {
			i++
		}
		if i == len(rs) {
			return out, nil
		}
		start := i
		for i < len(rs) && isIdentPart(rs[i]) {
			i++
		}
		label := string(rs[start:i])
		if label == "" {
			return nil, fmt.Errorf("want a label name at %q", string(rs[start:]))
		}
		for i < len(rs) && unicode.IsSpace(rs[i]) {
			i++
		}
		opStart := i
		for i < len(rs) && strings.ContainsRune("=!~", rs[i]) {
			i++
		}
		op := string(rs[opStart:i])
		if op != "=" && op != "!=" && op != "=~" && op != "!~" {
			return nil, fmt.Errorf("label %s: bad operator %q", label, op)
		}
		for i < len(rs) && unicode.IsSpace(rs[i]) {
			i++
		}
		if i == len(rs) || (rs[i] != '"' && rs[i] != '\'' && rs[i] != '`') {
			return nil, fmt.Errorf("label %s: want a quoted value", label)
		}
		end := closingQuote(rs, i)
		if end < 0 {
			return nil, fmt.Errorf("label %s: unterminated value", label)
		}
		out = append(out, matcher{label: label, op: op, value: string(rs[i+1 : end])})
		i = end + 1
	}
}

// closingQuote returns the index of the quote closing the string that
// starts at rs[start], honouring backslash escapes except in `raw` strings.
func closingQuote(rs []rune, start int) int {
	q := rs[start]
	for i := start + 1; i < len(rs); i++ {
		switch {
		case rs[i] == '\\' && q != '`':
			i++
		case rs[i] == q:
			return i
		}
	}
	return -1
}

// indexRune returns the index of the first r at or after start, or -1.
func indexRune(rs []rune, start int, r rune) int {
	for i := start; i < len(rs); i++ {
		if rs[i] == r {
			return i
		}
	}
	return -1
}

func isIdentStart(r rune) bool { return r == '_' || r == ':' || unicode.IsLetter(r) }
func isIdentPart(r rune) bool  { return isIdentStart(r) || unicode.IsDigit(r) }
