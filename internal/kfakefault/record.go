package kfakefault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// RefuseRecord makes c refuse for good, with err, every produce request
// that carries the first record it is sent (known by key and value),
// whether the record comes by itself or among others: as a broker refuses
// a record larger than its message.max.bytes, and with it the rest of the
// request. Other requests are handled normally. It returns a counter of
// the requests refused.
func RefuseRecord(c *kfake.Cluster, err *kerr.Error) *atomic.Int32 {
	var refused atomic.Int32
	var mu sync.Mutex
	var first []byte // key, a zero byte, value
	dec := kgo.DefaultDecompressor()
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		hit := false
		for _, rt := range pr.Topics {
			for _, rp := range rt.Partitions {
				recs, derr := records(dec, rp.Records)
				if derr != nil {
					continue // kfake answers it as it would
				}
				mu.Lock()
				for _, r := range recs {
					id := append(append(bytes.Clone(r.Key), 0), r.Value...)
					if first == nil {
						first = id
					}
					hit = hit || bytes.Equal(first, id)
				}
				mu.Unlock()
			}
		}
		if !hit {
			return nil, nil, false
		}
		refused.Add(1)
		return Refusal(pr, err), nil, true
	})
	return &refused
}

// records decodes the records of one partition's record batch.
func records(dec kgo.Decompressor, raw []byte) ([]kmsg.Record, error) {
	var b kmsg.RecordBatch
	if err := b.ReadFrom(raw); err != nil {
		return nil, fmt.Errorf("record batch: %w", err)
	}
	data := b.Records
	if codec := kgo.CompressionCodecType(b.Attributes & 0x07); codec != kgo.CodecNone {
		var err error
		if data, err = dec.Decompress(data, codec); err != nil {
			return nil, fmt.Errorf("decompress: %w", err)
		}
	}
	var out []kmsg.Record
	for len(data) > 0 {
		l, n := binary.Varint(data)
		if n <= 0 || l < 0 || int(l) > len(data)-n {
			return nil, errors.New("record length out of bounds")
		}
		var r kmsg.Record
		if err := r.ReadFrom(data[:n+int(l)]); err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		out = append(out, r)
		data = data[n+int(l):]
	}
	return out, nil
}
