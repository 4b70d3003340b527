package kfakefault_test

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-producer/iot-producer/internal/kfakefault"
)

func TestRefusesThenAccepts(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := kfakefault.RefuseProduce(c, kerr.TopicAuthorizationFailed, 2)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 2 {
		err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("x")}).FirstErr()
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("produce %d: %v, want TOPIC_AUTHORIZATION_FAILED", i+1, err)
		}
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("third produce: %v", err)
	}
	if seen.Load() != 3 {
		t.Fatalf("saw %d produce requests, want 3", seen.Load())
	}
}

func TestRefuseRecordRefusesOnlyRequestsCarryingIt(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	refused := kfakefault.RefuseRecord(c, kerr.MessageTooLarge)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"), kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for i, tc := range []struct {
		values []string
		want   error
	}{
		{[]string{"bad"}, kerr.MessageTooLarge},
		{[]string{"good"}, nil},
		{[]string{"good", "bad", "good"}, kerr.MessageTooLarge},
		{[]string{"bad"}, kerr.MessageTooLarge},
		{[]string{"good", "good"}, nil},
	} {
		recs := make([]*kgo.Record, len(tc.values))
		for j, v := range tc.values {
			recs[j] = &kgo.Record{Value: []byte(v)}
		}
		for j, r := range cl.ProduceSync(ctx, recs...) {
			if string(r.Record.Value) == "good" && tc.want != nil && r.Err == nil {
				continue // the client sent it in a request of its own
			}
			if !errors.Is(r.Err, tc.want) || (tc.want == nil) != (r.Err == nil) {
				t.Fatalf("produce %d, record %d: %v, want %v", i+1, j, r.Err, tc.want)
			}
		}
	}
	if n := refused.Load(); n != 3 {
		t.Fatalf("refused %d requests, want 3", n)
	}
}
