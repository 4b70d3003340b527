package modbus_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
	mb "github.com/iot-producer/iot-producer/drivers/modbus"
	sim "github.com/iot-producer/iot-producer/simulator/modbus"
)

// logBuffer is a log destination safe for the driver's goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFailingUnitRequestsPerPoll counts the requests the device receives
// in each poll of a unit whose six tags take six requests. A unit that
// does not answer (a timeout, or a gateway's exception 0x0A or 0x0B for
// it) gets one request per poll, the rest of the poll being skipped, and
// is demoted after three such polls, not after three requests; a unit
// answering another exception gets all six requests and is not demoted.
// The driver's emit holds each poll until the counts are read, so that
// polls never overlap the counting.
func TestFailingUnitRequestsPerPoll(t *testing.T) {
	u16 := mb.Type{Base: mb.Uint16}
	var pts []sim.Point
	var tags []mb.Tag
	for i := range 6 {
		name := fmt.Sprintf("t%d", i)
		pts = append(pts, sim.Point{Name: name, Address: uint16(10 * i), Type: u16, Value: drivers.Uint(uint64(i))})
		tags = append(tags, mb.Tag{Name: name, Address: uint16(10 * i), Type: u16, Bit: -1})
	}
	cases := []struct {
		name         string
		faults       sim.Faults
		perPoll      int
		demoted      bool
		logSays      string
		errorKind    string
		errorPerPoll int
	}{
		{"timeout", sim.Faults{Silent: true}, 1, true, "it did not answer", mb.KindTimeout, 1},
		{"exception 0x0A", sim.Faults{Exception: 0x0A}, 1, true, "exception 0x0A gateway path unavailable (function 0x03 read holding registers)", mb.KindException, 1},
		{"exception 0x0B", sim.Faults{Exception: 0x0B}, 1, true, "exception 0x0B gateway target device failed to respond (function 0x03 read holding registers): check the unit id", mb.KindException, 1},
		{"exception 0x04", sim.Faults{Exception: 0x04}, 6, false, "exception 0x04 server device failure (function 0x03 read holding registers)", mb.KindException, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, _ := newServer(t, sim.ServerOptions{}, sim.Unit{ID: 7, Points: pts})
			srv.SetFaults(7, c.faults)
			addr := serveTCP(t, srv)
			var logs logBuffer
			errs := map[string]int{}
			var errMu sync.Mutex
			d, err := mb.New(mb.Options{Name: "dead", Endpoint: mb.Endpoint{Address: addr}, Unit: 7, Interval: 10 * time.Millisecond,
				Timeout: 200 * time.Millisecond, Tags: tags, Pool: mb.NewPool(mb.PoolOptions{}),
				Logger: slog.New(slog.NewTextHandler(&logs, nil)),
				OnError: func(kind string) {
					errMu.Lock()
					errs[kind]++
					errMu.Unlock()
				}})
			if err != nil {
				t.Fatal(err)
			}
			if d.Requests() != 6 {
				t.Fatalf("%d requests per poll planned, want 6", d.Requests())
			}
			batches := make(chan []drivers.Sample)
			resume := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- d.Run(ctx, func(s []drivers.Sample) {
					select {
					case batches <- s:
						<-resume
					case <-ctx.Done():
					}
				})
			}()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			seen := 0
			for poll := 1; poll <= 3; poll++ {
				var b []drivers.Sample
				select {
				case b = <-batches:
				case <-time.After(10 * time.Second):
					t.Fatalf("poll %d: no batch within 10s", poll)
				}
				n := srv.Stats().Requests[7]
				got := n - seen
				seen = n
				errMu.Lock()
				kinds := fmt.Sprint(errs)
				errMu.Unlock()
				demotedNow := strings.Contains(logs.String(), "modbus unit demoted")
				resume <- struct{}{}
				t.Logf("poll %d: %d requests, errors %s", poll, got, kinds)
				if got != c.perPoll {
					t.Errorf("poll %d: the device received %d requests, want %d", poll, got, c.perPoll)
				}
				if len(b) != 6 {
					t.Fatalf("poll %d: %d samples, want 6", poll, len(b))
				}
				for _, s := range b {
					if s.Quality != drivers.QualityBad || s.HasValue() {
						t.Errorf("poll %d: sample %+v, want bad without value", poll, s)
					}
				}
				if want := c.demoted && poll == 3; demotedNow != want {
					t.Errorf("poll %d: demoted %v, want %v; log:\n%s", poll, demotedNow, want, logs.String())
				}
			}
			errMu.Lock()
			if errs[c.errorKind] != 3*c.errorPerPoll {
				t.Errorf("errors %v: want %d of kind %s", errs, 3*c.errorPerPoll, c.errorKind)
			}
			errMu.Unlock()
			if l := logs.String(); !strings.Contains(l, c.logSays) {
				t.Errorf("log does not say %q:\n%s", c.logSays, l)
			}
		})
	}
}
