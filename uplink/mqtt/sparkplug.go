package mqtt

import (
	"errors"
	"log/slog"
)

// SparkplugOptions configures Sparkplug B payloads.
type SparkplugOptions struct {
	GroupID    string
	EdgeNodeID string
}

func newSparkplugCodec(o SparkplugOptions, gateway string, qos byte, log *slog.Logger) (codec, error) {
	return nil, errors.New("sparkplug: Sparkplug B payloads are not available in this build yet")
}
