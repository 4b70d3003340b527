package agent

import (
	"strconv"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/record"
)

// The buffer is told what its records carry, so that a salvage can say
// which sequence ranges of which series it knows lost (buffer.LostRange).

// seriesKey names a series in the buffer's lost ranges: the device and
// the tag, each quoted, so that no two series share a name.
func seriesKey(device, tag string) string {
	return strconv.Quote(device) + "/" + strconv.Quote(tag)
}

// recordSeries is buffer.Options.Series for the agent's records.
func recordSeries(rec []byte) (string, uint64, bool) {
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

// lastSeqs is buffer.Options.LastSeqs: the ingest stage's sequence state
// kept in the buffer's metadata.
func lastSeqs(b *buffer.Buffer) (map[string]uint64, error) {
	m, err := ingest.LastSeqs(b)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(m))
	for s, n := range m {
		out[seriesKey(s.Device, s.Tag)] = n
	}
	return out, nil
}
