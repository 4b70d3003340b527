package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// NewLogger builds the agent's logger from the log section of the config.
// level is debug, info, warn (or warning) or error; format is text or json;
// both are case-insensitive and empty means info and text. A nil w writes
// to standard error. An unknown level or format is an error naming it.
func NewLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	if w == nil {
		w = os.Stderr
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: redactURLAttr}
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("telemetry: log format %q: want text or json", format)
	}
}

// redactURLAttr replaces the credentials of URLs in string and error
// values ("tcp://user:pw@host" logs as "tcp://REDACTED@host"), so a
// broker address or an error quoting it never puts a password in the log.
func redactURLAttr(_ []string, a slog.Attr) slog.Attr {
	var s string
	switch a.Value.Kind() {
	case slog.KindString:
		s = a.Value.String()
	case slog.KindAny:
		err, ok := a.Value.Any().(error)
		if !ok {
			return a
		}
		s = err.Error()
	default:
		return a
	}
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		a.Value = slog.StringValue(urlUserinfo.ReplaceAllString(s, "${1}REDACTED@"))
	}
	return a
}

// parseLevel maps a configured level name to a slog.Level.
func parseLevel(level string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	default:
		return 0, fmt.Errorf("telemetry: log level %q: want debug, info, warn or error", level)
	}
}
