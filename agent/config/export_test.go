package config

import "reflect"

// Internals the external tests (package config_test, which can import the
// plug-ins) read.
var (
	DurationPattern = durationPattern
	ByteSizePattern = byteSizePattern
	DerivedPaths    = derivedDefaults
)

// ParseRules parses the rule tags of every field of the struct type t.
func ParseRules(t reflect.Type) error {
	for i := range t.NumField() {
		if _, err := parseRule(t.Field(i)); err != nil {
			return err
		}
	}
	return nil
}
