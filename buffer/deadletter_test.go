package buffer

import (
	"bytes"
	"fmt"
	"testing"
)

func TestDeadLetterQueuesGetOnlyAppendTo(t *testing.T) {
	o := Options{Queues: []string{"kafka", "mqtt"}, DeadLetterQueues: []string{"kafka.dead"}, NoSync: true}
	b := openT(t, testPath(t), o)
	if err := b.Append([][]byte{[]byte("a"), []byte("b")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.AppendTo("kafka.dead", [][]byte{[]byte("refused")}); err != nil {
		t.Fatal(err)
	}
	if err := b.AppendTo("nope", [][]byte{[]byte("x")}); err == nil {
		t.Fatal("AppendTo an unknown queue succeeded")
	}
	want := map[string][]string{"kafka": {"a", "b"}, "mqtt": {"a", "b"}, "kafka.dead": {"refused"}}
	check := func(b *Buffer) {
		t.Helper()
		for name, recs := range want {
			got, err := b.Queue(name).Read(Start(), 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(recs) {
				t.Fatalf("%s holds %d records, want %d", name, len(got), len(recs))
			}
			for i, r := range got {
				if !bytes.Equal(r.Data, []byte(recs[i])) {
					t.Errorf("%s[%d] = %q, want %q", name, i, r.Data, recs[i])
				}
			}
		}
	}
	check(b)
	check(reopen(t, b, o))
}

func TestAppendToLeavesOtherQueuesAlone(t *testing.T) {
	o := Options{Queues: []string{"kafka"}, DeadLetterQueues: []string{"kafka.dead"}, NoSync: true}
	b := openT(t, testPath(t), o)
	for i := range 3 {
		if err := b.AppendTo("kafka.dead", [][]byte{[]byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.Queue("kafka").Stats().Records; n != 0 {
		t.Fatalf("kafka queue got %d records from AppendTo", n)
	}
	if n := b.Queue("kafka.dead").Stats().Records; n != 3 {
		t.Fatalf("dead-letter queue holds %d records, want 3", n)
	}
	select {
	case <-b.Queue("kafka").Notify():
		t.Fatal("AppendTo woke the kafka queue's reader")
	default:
	}
}
