package buffer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestConcurrentAppendReadAck runs one appender, one reader/acker per
// queue and a stats poller against the background flush, and checks that
// every record arrives once, in order, and that nothing is left after a
// reopen.
func TestConcurrentAppendReadAck(t *testing.T) {
	const appends, perAppend = 200, 50
	o := testOptions("kafka", "mqtt")
	o.FlushInterval = time.Millisecond
	b := openT(t, testPath(t), o)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < appends; i++ {
			recs := make([][]byte, perAppend)
			for j := range recs {
				recs[j] = []byte(strconv.Itoa(i*perAppend + j))
			}
			if err := b.Append(recs, map[string][]byte{"last": []byte(strconv.Itoa(i))}); err != nil {
				errs <- err
				return
			}
		}
	}()
	for qi, name := range []string{"kafka", "mqtt"} {
		q := b.Queue(name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(qi), 1))
			next, after := 0, Start()
			var held []Pos // read but not yet acknowledged
			for next < appends*perAppend {
				rs, err := q.Read(after, 1+rng.IntN(120))
				if err != nil {
					errs <- err
					return
				}
				if len(rs) == 0 {
					select {
					case <-q.Notify():
					case <-ctx.Done():
						errs <- fmt.Errorf("%s: timed out waiting after record %d", name, next)
						return
					}
					continue
				}
				for _, r := range rs {
					if got := string(r.Data); got != strconv.Itoa(next) {
						errs <- fmt.Errorf("%s: record %q, want %d", name, got, next)
						return
					}
					next++
					held = append(held, r.Pos)
				}
				after = rs[len(rs)-1].Pos
				rng.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
				k := rng.IntN(len(held) + 1)
				if err := q.Ack(held[:k]...); err != nil {
					errs <- err
					return
				}
				held = append(held[:0], held[k:]...)
			}
			if err := q.Ack(held...); err != nil {
				errs <- err
			}
		}()
	}
	stop := make(chan struct{})
	var pollWG sync.WaitGroup
	pollWG.Add(1)
	go func() {
		defer pollWG.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_ = b.Stats()
			}
		}
	}()
	wg.Wait()
	close(stop)
	pollWG.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b = reopen(t, b, o)
	for _, name := range []string{"kafka", "mqtt"} {
		if s := b.Queue(name).Stats(); s.Records != 0 || s.Frames != 0 {
			t.Fatalf("%s after reopen: %+v", name, s)
		}
	}
	var last string
	if err := b.Meta(func(k, v []byte) error { last = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if last != strconv.Itoa(appends-1) {
		t.Fatalf("meta last = %q", last)
	}
	if st := b.Stats(); st.FileSize > 4<<20 {
		t.Fatalf("file grew to %d bytes for %d small records", st.FileSize, appends*perAppend)
	}
}
