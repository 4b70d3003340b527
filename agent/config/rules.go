package config

// Rules live in struct tags next to the fields they constrain, in the
// common sections and in every plug-in's Settings alike; validation, the
// JSON Schema and the reference all read them through ruleOf:
//
//	required:"true"  the key must be given (in every element of its list)
//	enum:"a,b,c"     one of these values; a leading comma (",a,b") also
//	                 accepts the empty value, which then means "none" or
//	                 "let the plug-in decide"
//	range:"0,255"    an inclusive numeric range; "1," has no upper bound
//	min:"1ms"        the least Duration ("1ns" means positive) or
//	                 ByteSize ("1MiB")
//	pattern:"^…$"    a regular expression for the JSON Schema only: the
//	                 plug-in's Check gives the message for a value that
//	                 does not match

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// rule is what a field's tags say about its valid values.
type rule struct {
	required bool
	enum     []string
	emptyOK  bool
	rng      *numRange
	minDur   Duration
	minBytes ByteSize
	pattern  string
}

// numRange is an inclusive range for an integer or float field.
type numRange struct {
	min    float64
	max    float64
	hasMax bool
}

var rules sync.Map // reflect.StructField identity (type + index) → rule

type ruleKey struct {
	t reflect.Type
	i int
}

// ruleOf returns the rule tags of field i of struct type t. A malformed
// tag is a programming error: TestRuleTagsParse parses every registered
// type's tags.
func ruleOf(t reflect.Type, i int) rule {
	k := ruleKey{t, i}
	if r, ok := rules.Load(k); ok {
		return r.(rule)
	}
	r, err := parseRule(t.Field(i))
	if err != nil {
		panic(fmt.Sprintf("BUG: config: %s.%s: %v", t.Name(), t.Field(i).Name, err))
	}
	rules.Store(k, r)
	return r
}

func parseRule(f reflect.StructField) (rule, error) {
	var r rule
	r.required = f.Tag.Get("required") == "true"
	if e, ok := f.Tag.Lookup("enum"); ok {
		if strings.HasPrefix(e, ",") {
			r.emptyOK, e = true, e[1:]
		}
		r.enum = strings.Split(e, ",")
	}
	if s, ok := f.Tag.Lookup("range"); ok {
		lo, hi, found := strings.Cut(s, ",")
		if !found {
			return r, fmt.Errorf("range tag %q: want lo,hi or lo,", s)
		}
		min, err := strconv.ParseFloat(lo, 64)
		if err != nil {
			return r, fmt.Errorf("range tag %q: %v", s, err)
		}
		r.rng = &numRange{min: min}
		if hi != "" {
			if r.rng.max, err = strconv.ParseFloat(hi, 64); err != nil {
				return r, fmt.Errorf("range tag %q: %v", s, err)
			}
			r.rng.hasMax = true
		}
	}
	if s, ok := f.Tag.Lookup("min"); ok {
		switch f.Type {
		case durationType:
			d, err := ParseDuration(s)
			if err != nil {
				return r, fmt.Errorf("min tag %q: %v", s, err)
			}
			r.minDur = d
		case byteSizeType:
			b, err := ParseByteSize(s)
			if err != nil {
				return r, fmt.Errorf("min tag %q: %v", s, err)
			}
			r.minBytes = b
		default:
			return r, fmt.Errorf("min tag on a %s: only durations and sizes take one", f.Type)
		}
	}
	r.pattern = f.Tag.Get("pattern")
	return r, nil
}
