package agent

import (
	"errors"
	"strconv"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/record"
)

// The buffer is told what its records carry, so that a salvage can say
// which sequence ranges of which series it knows lost (buffer.LostRange).

// seriesKey names a series in the buffer's lost ranges: the device and
// the tag, each quoted, so that no two series share a name.
func seriesKey(device, tag string) string {
	return strconv.Quote(device) + "/" + strconv.Quote(tag)
}

// RecordSeries is buffer.Options.Series for the agent's records: the
// series (quoted device and tag) and sequence number a record carries.
func RecordSeries(rec []byte) (string, uint64, bool) {
	env, err := record.DecodeEnvelope(rec)
	if err != nil {
		return "", 0, false
	}
	f, err := record.Decode(env.Value)
	if err != nil {
		return "", 0, false
	}
	return seriesKey(f.Device, f.Tag), f.Seq, true
}

// LastSeqs is buffer.Options.LastSeqs: the last sequence number of every
// series in the ingest stage's state kept in the buffer's metadata.
func LastSeqs(meta func(fn func(key, value []byte) error) error) (map[string]uint64, error) {
	m, err := ingest.LastSeqs(metaReader(meta))
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(m))
	for s, n := range m {
		out[seriesKey(s.Device, s.Tag)] = n
	}
	return out, nil
}

// metaReader is an ingest.Store that only reads metadata entries.
type metaReader func(fn func(key, value []byte) error) error

func (m metaReader) Meta(fn func(key, value []byte) error) error { return m(fn) }

func (m metaReader) MetaValue(key string) ([]byte, error) {
	var out []byte
	err := m(func(k, v []byte) error {
		if string(k) == key {
			out = v
		}
		return nil
	})
	return out, err
}

func (metaReader) Append([][]byte, map[string][]byte) error {
	return errors.New("metadata only: nothing can be appended")
}

func (metaReader) Epoch() string { return "" }
