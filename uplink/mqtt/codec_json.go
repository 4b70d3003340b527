package mqtt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/iot-producer/iot-producer/uplink"
)

// jsonCodec publishes each record's JSON value as it is, to a topic made
// from the template.
type jsonCodec struct {
	topic  func(device string, value []byte) (string, error)
	qos    byte
	retain bool
}

func newJSONCodec(tmpl, gateway string, qos byte, retain bool) (*jsonCodec, error) {
	f, err := topicFunc(tmpl, gateway)
	if err != nil {
		return nil, err
	}
	return &jsonCodec{topic: f, qos: qos, retain: retain}, nil
}

func (c *jsonCodec) encode(_ uplink.Lane, m *uplink.Message, out []publish) ([]publish, error) {
	topic, err := c.topic(m.Key, m.Value)
	if err != nil {
		return out, err
	}
	return append(out, publish{topic: topic, payload: m.Value, qos: c.qos, retain: c.retain}), nil
}

func (c *jsonCodec) sessionStart() []publish { return nil }
func (c *jsonCodec) sessionEnd() []publish   { return nil }
func (c *jsonCodec) will() *publish          { return nil }
func (c *jsonCodec) cleanSession() bool      { return false }
func (c *jsonCodec) commands() (string, func(string, []byte) bool) {
	return "", nil
}

// tagKey is how the record's JSON names the tag; the encoder writes it
// once, before the value.
var tagKey = []byte(`"tag":"`)

// tagOf reads the tag from a record's JSON value without decoding it all.
func tagOf(value []byte) (string, error) {
	i := bytes.Index(value, tagKey)
	if i < 0 {
		return "", errors.New("record has no tag")
	}
	rest := value[i+len(tagKey):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return "", errors.New("record's tag is not terminated")
	}
	if bytes.IndexByte(rest[:end], '\\') < 0 {
		if end == 0 {
			return "", errors.New("record's tag is empty")
		}
		return string(rest[:end]), nil
	}
	// Escapes: let encoding/json read the string.
	var tag string
	if err := json.NewDecoder(bytes.NewReader(value[i+len(tagKey)-1:])).Decode(&tag); err != nil {
		return "", fmt.Errorf("record's tag: %w", err)
	}
	return tag, nil
}
