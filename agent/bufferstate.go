package agent

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/telemetry"
)

// bufferSnapshot reads the buffer's drop and salvage counts for the
// metrics, at scrape time.
func bufferSnapshot(b *buffer.Buffer) telemetry.BufferSnapshot {
	st := b.Stats()
	r := b.Recovery()
	s := telemetry.BufferSnapshot{
		Dropped:            make(map[string]map[string]uint64, len(st.Queues)),
		SalvagedRecords:    r.RecordsRecovered,
		SalvageLostRecords: r.RecordsLost,
		SalvageLostSeries:  uint64(r.LostSeries),
		SalvageLostSeqs:    r.LostSeqs,
		StateLost:          len(r.StateLost) > 0,
	}
	for name, q := range st.Queues {
		m := make(map[string]uint64, len(q.Dropped))
		for reason, n := range q.Dropped {
			m[string(reason)] = n
		}
		s.Dropped[name] = m
	}
	return s
}

// bufferHealth is the buffer's /ready entry: degraded (still ready) when
// Open found the file damaged or its sequence state lost, saying what was
// recovered and lost, so that an operator sees it without reading the log.
func bufferHealth(b *buffer.Buffer) (telemetry.State, string) {
	r := b.Recovery()
	var parts []string
	if r.Quarantined != "" {
		parts = append(parts, fmt.Sprintf("the buffer file was damaged and moved aside: %d records in %d frames recovered, %d records in %d frames known lost",
			r.RecordsRecovered, r.FramesRecovered, r.RecordsLost, r.FramesLost))
		if r.LostSeries > 0 {
			parts = append(parts, fmt.Sprintf("%d sequence numbers known lost in %d ranges of %d series", r.LostSeqs, r.LostRangeCount, r.LostSeries))
			for i, l := range r.LostRanges {
				if i == 5 {
					parts = append(parts, fmt.Sprintf("%d more lost ranges in the log", r.LostRangeCount-5))
					break
				}
				to := "its last number before the damage"
				if l.To > 0 {
					to = strconv.FormatUint(l.To, 10)
				}
				parts = append(parts, fmt.Sprintf("lost: queue %s series %s seq %d to %s", l.Queue, l.Series, l.From, to))
			}
		}
		for i, l := range r.Lost {
			if i == 5 {
				parts = append(parts, fmt.Sprintf("%d more lost frames in the log", len(r.Lost)-5))
				break
			}
			parts = append(parts, fmt.Sprintf("lost: queue %s frame %d, %d records appended from %s", l.Queue, l.Frame, l.Records, l.Appended.UTC().Format("2006-01-02T15:04:05Z")))
		}
	}
	st := b.Stats()
	names := make([]string, 0, len(st.Queues))
	for name := range st.Queues {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if q := st.Queues[name]; q.CorruptFrames > 0 && r.Quarantined == "" {
			parts = append(parts, fmt.Sprintf("queue %s: %d records lost in %d corrupt frames since the start", name, q.CorruptRecords, q.CorruptFrames))
		}
	}
	if len(r.StateLost) > 0 {
		parts = append(parts, fmt.Sprintf("sequence state lost (%s): new stream epoch %s, sequence numbers start again", strings.Join(r.StateLost, "; "), b.Epoch()))
	}
	if len(parts) == 0 {
		return telemetry.StateOK, "open"
	}
	return telemetry.StateDegraded, strings.Join(parts, "; ")
}
