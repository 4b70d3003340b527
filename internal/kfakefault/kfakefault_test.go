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
