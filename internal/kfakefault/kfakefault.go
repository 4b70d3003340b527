// Package kfakefault makes a kfake cluster answer produce requests with a
// Kafka error, for tests of how a producer handles refusals. It knows
// nothing of the code under test.
package kfakefault

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// RefuseProduce makes c answer the next n produce requests with err for
// every partition they carry; later requests are handled normally. It
// returns a counter of the produce requests seen so far.
func RefuseProduce(c *kfake.Cluster, err *kerr.Error, n int32) *atomic.Int32 {
	var seen atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if seen.Add(1) > n {
			return nil, nil, false
		}
		c.KeepControl()
		return Refusal(req.(*kmsg.ProduceRequest), err), nil, true
	})
	return &seen
}

// Refusal is the response to pr that refuses every partition it carries
// with err, for a control function of a test's own.
func Refusal(pr *kmsg.ProduceRequest, err *kerr.Error) *kmsg.ProduceResponse {
	resp := pr.ResponseKind().(*kmsg.ProduceResponse)
	resp.Version = pr.Version
	for _, rt := range pr.Topics {
		st := kmsg.NewProduceResponseTopic()
		// Produce v13 names topics by id: echo both.
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = err.Code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
