package seqcheck

import (
	"fmt"
	"strings"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/record"
)

// Order checks the order records arrive in, series by series and lane by
// lane, as a consumer reads them (a Kafka partition in offset order, an
// MQTT subscription in arrival order).
//
// The rule it enforces: a record not seen before in any lane must carry a
// sequence number above every one its series has had in its lane so far.
// A record seen before (in any lane) is a re-send and is counted as such,
// never as an error. So a consumer that keeps, per series and lane, the
// highest sequence number seen and skips what is not above it loses
// nothing: nothing new ever arrives behind a later record. Gaps within a
// lane are allowed — the live lane leaves what it skipped to the backlog
// lane — and completeness is Verify's job.
type Order struct {
	seen       map[ingest.Series]map[uint64]bool
	high       map[laneSeries]uint64
	records    int
	resent     int
	violations int
	examples   []string
}

type laneSeries struct {
	lane string
	s    ingest.Series
}

// NewOrder returns an empty Order.
func NewOrder() *Order {
	return &Order{seen: map[ingest.Series]map[uint64]bool{}, high: map[laneSeries]uint64{}}
}

// Add notes one record value that arrived in lane (the iot-lane header, or
// any name for a sink without lanes).
func (o *Order) Add(lane string, value []byte) error {
	f, err := record.Decode(value)
	if err != nil {
		return err
	}
	o.AddSeq(lane, ingest.Series{Device: f.Device, Tag: f.Tag}, f.Seq)
	return nil
}

// AddSeq notes that sequence number seq of series s arrived in lane.
func (o *Order) AddSeq(lane string, s ingest.Series, seq uint64) {
	o.records++
	seen := o.seen[s]
	if seen == nil {
		seen = map[uint64]bool{}
		o.seen[s] = seen
	}
	k := laneSeries{lane, s}
	high := o.high[k]
	switch {
	case seen[seq]:
		o.resent++
	case seq <= high:
		o.violations++
		if len(o.examples) < 5 {
			o.examples = append(o.examples, fmt.Sprintf("%s/%s#%d arrived in lane %s after #%d", s.Device, s.Tag, seq, lane, high))
		}
	}
	seen[seq] = true
	if seq > high {
		o.high[k] = seq
	}
}

// Violations returns how many new records arrived behind a later one of
// their series and lane.
func (o *Order) Violations() int { return o.violations }

// String summarises what was seen.
func (o *Order) String() string {
	s := fmt.Sprintf("records=%d resent=%d out_of_order=%d", o.records, o.resent, o.violations)
	if len(o.examples) > 0 {
		s += " e.g. " + strings.Join(o.examples, ", ")
	}
	return s
}
