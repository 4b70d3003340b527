// Package seqcheck proves delivery in tests: it reads a topic back and
// checks, series by series, that every sequence number the gateway
// committed arrived — counting what is missing and what came twice.
package seqcheck

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/record"
)

// Checker collects the sequence numbers seen per series.
type Checker struct {
	seen    map[ingest.Series]map[uint64]int
	records int
}

// New returns an empty Checker.
func New() *Checker { return &Checker{seen: map[ingest.Series]map[uint64]int{}} }

// Add decodes one record value and notes its sequence number.
func (c *Checker) Add(value []byte) error {
	f, err := record.Decode(value)
	if err != nil {
		return err
	}
	k := ingest.Series{Device: f.Device, Tag: f.Tag}
	m := c.seen[k]
	if m == nil {
		m = map[uint64]int{}
		c.seen[k] = m
	}
	m[f.Seq]++
	c.records++
	return nil
}

// Records returns how many records were added.
func (c *Checker) Records() int { return c.records }

// Report is the outcome of Verify.
type Report struct {
	Series     int // series expected
	Expected   int // sequence numbers expected in all
	Records    int // records read
	Missing    int // expected numbers never seen
	Duplicates int // records beyond the first for a number
	Unexpected int // numbers above the committed last (or unknown series)
	Examples   []string
}

// String summarises the report.
func (r Report) String() string {
	s := fmt.Sprintf("series=%d expected=%d read=%d missing=%d duplicates=%d unexpected=%d",
		r.Series, r.Expected, r.Records, r.Missing, r.Duplicates, r.Unexpected)
	if len(r.Examples) > 0 {
		s += " e.g. " + strings.Join(r.Examples, ", ")
	}
	return s
}

// Verify compares what was seen with the last committed sequence number of
// each series: every number from 1 to last must have been seen.
func (c *Checker) Verify(last map[ingest.Series]uint64) Report {
	r := Report{Series: len(last), Records: c.records}
	keys := make([]ingest.Series, 0, len(last))
	for k := range last {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].Device+"\x00"+keys[i].Tag < keys[j].Device+"\x00"+keys[j].Tag
	})
	for _, k := range keys {
		n := last[k]
		r.Expected += int(n)
		seen := c.seen[k]
		for seq := uint64(1); seq <= n; seq++ {
			if seen[seq] == 0 {
				r.Missing++
				if len(r.Examples) < 5 {
					r.Examples = append(r.Examples, fmt.Sprintf("%s/%s#%d missing", k.Device, k.Tag, seq))
				}
			}
		}
	}
	for k, seen := range c.seen {
		n, known := last[k]
		for seq, count := range seen {
			r.Duplicates += count - 1
			if !known || seq > n {
				r.Unexpected++
			}
		}
	}
	return r
}

// Expect builds the expectation for Verify from last sequence numbers per
// device, all for one tag.
func Expect(lastPerDevice map[string]uint64, tag string) map[ingest.Series]uint64 {
	out := make(map[ingest.Series]uint64, len(lastPerDevice))
	for d, n := range lastPerDevice {
		out[ingest.Series{Device: d, Tag: tag}] = n
	}
	return out
}

// ReadTopic consumes topic from the start up to the end offsets it has
// when called, adding every record to c. Call it once the producers have
// stopped. It returns the first fetch or decoding error, or ctx's error.
func (c *Checker) ReadTopic(ctx context.Context, brokers []string, topic string) error {
	return readTopic(ctx, brokers, topic, func(r *kgo.Record) error { return c.Add(r.Value) })
}

// ReadTopicOrder is ReadTopic that also hands each record to o, partition
// by partition in offset order, with its iot-lane header.
func (c *Checker) ReadTopicOrder(ctx context.Context, brokers []string, topic string, o *Order) error {
	return readTopic(ctx, brokers, topic, func(r *kgo.Record) error {
		if err := c.Add(r.Value); err != nil {
			return err
		}
		lane := ""
		for _, h := range r.Headers {
			if h.Key == record.HeaderLane {
				lane = string(h.Value)
			}
		}
		return o.Add(lane, r.Value)
	})
}

// readTopic consumes topic from the start up to the end offsets it has
// when called, handing every record to add in offset order per partition.
func readTopic(ctx context.Context, brokers []string, topic string, add func(*kgo.Record) error) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("read %s: %w (partitions not read to the end: %v)", topic, ctx.Err(), remaining)
		}
		for _, e := range fetches.Errors() {
			return fmt.Errorf("fetch %s[%d]: %w", e.Topic, e.Partition, e.Err)
		}
		var addErr error
		fetches.EachRecord(func(r *kgo.Record) {
			if err := add(r); err != nil && addErr == nil {
				addErr = fmt.Errorf("record at %s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
		if addErr != nil {
			return addErr
		}
	}
	return nil
}

// AddBuffer opens the buffer file at path (the agent must be stopped),
// adds every record still queued for queue — kept, not lost: it goes out
// with the next run — and returns how many there were together with the
// last committed sequence number of every series, for Verify.
func (c *Checker) AddBuffer(path, queue string) (left int, last map[ingest.Series]uint64, err error) {
	buf, err := buffer.Open(path, buffer.Options{Queues: []string{queue}, LockTimeout: 5 * time.Second})
	if err != nil {
		return 0, nil, err
	}
	defer buf.Close()
	recs, err := buf.Queue(queue).Read(buffer.Start(), 1<<30)
	if err != nil {
		return 0, nil, err
	}
	for _, r := range recs {
		env, err := record.DecodeEnvelope(r.Data)
		if err != nil {
			return 0, nil, fmt.Errorf("buffered record %s: %w", r.Pos, err)
		}
		if err := c.Add(env.Value); err != nil {
			return 0, nil, fmt.Errorf("buffered record %s: %w", r.Pos, err)
		}
	}
	last, err = ingest.LastSeqs(buf)
	if err != nil {
		return 0, nil, err
	}
	return len(recs), last, buf.Close()
}
