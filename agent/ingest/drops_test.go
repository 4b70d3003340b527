package ingest_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/drivers"
)

// TestDroppedSamplesLeaveGapsAndCounts fills pending while commits fail,
// with each policy: the dropped samples take their sequence numbers (a gap
// per dropped sample in its series once the disk takes commits again),
// drop_newest keeps the oldest samples and drop_oldest the newest, and the
// drop counter is committed with the buffer's metadata: a new ingest stage
// on the same file starts from it.
func TestDroppedSamplesLeaveGapsAndCounts(t *testing.T) {
	for _, newest := range []bool{false, true} {
		name := map[bool]string{false: "drop_oldest", true: "drop_newest"}[newest]
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.db")
			store := &failingStore{Buffer: openBuffer(t, path)}
			store.fail.Store(true)
			in, err := ingest.New(store, ingest.Options{
				GatewayID: "gw", CommitSize: 10, MaxPending: 40, RetryInterval: time.Hour, Logger: quiet, DropNewest: newest,
			})
			if err != nil {
				t.Fatal(err)
			}
			// 100 samples of one series, in order; 40 fit.
			for i := range 100 {
				in.Emit([]drivers.Sample{{Device: "d", Tag: "t", Value: drivers.Int(int64(i)), ReadTime: time.Now()}})
			}
			store.fail.Store(false)
			stop := run(t, in)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			recs := readAll(t, store.Buffer)
			if len(recs) != 40 {
				t.Fatalf("%d records, want 40", len(recs))
			}
			first, last := recs[0], recs[len(recs)-1]
			switch {
			case newest && (first.Seq != 1 || first.Int != 0 || last.Seq != 40):
				t.Fatalf("drop_newest: first %d (value %d), last %d; want the oldest 40 numbered 1..40", first.Seq, first.Int, last.Seq)
			case !newest && (first.Seq != 61 || first.Int != 60 || last.Seq != 100):
				t.Fatalf("drop_oldest: first %d (value %d), last %d; want the newest 40 numbered 61..100", first.Seq, first.Int, last.Seq)
			}
			if got := in.LastSeq("d", "t"); got != 100 {
				t.Fatalf("last seq %d, want 100: every sample takes a number", got)
			}
			if got := in.Dropped()["pending_full"]; got != 60 {
				t.Fatalf("dropped %d, want 60", got)
			}
			again, err := ingest.New(store.Buffer, ingest.Options{GatewayID: "gw", Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if got := again.Dropped()["pending_full"]; got != 60 {
				t.Fatalf("after a restart the counter says %d, want 60", got)
			}
			if got := again.LastSeq("d", "t"); got != 100 {
				t.Fatalf("after a restart the last seq is %d, want 100", got)
			}
		})
	}
}
