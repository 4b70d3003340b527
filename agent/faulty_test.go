package agent_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/drivers"
)

// The faulty driver is a test plug-in, registered and built like any
// driver (plcs[].driver: faulty), that reads nothing but a counter and
// misbehaves on purpose in its first run, as no real driver can be made to
// from the outside: it fails, stops polling, or stops polling and ignores
// its context. The agent's supervision is judged from what it shows
// outside: /metrics, /ready and the log.
func init() {
	config.RegisterDriver(config.DriverPlugin{
		Name:    "faulty",
		Summary: "test driver that misbehaves on purpose in its first run",
		New:     func() config.Settings { return &faultySettings{PollInterval: config.Duration(10 * time.Millisecond)} },
	})
}

// Faults of the faulty driver's first run.
const (
	faultFail  = "fail"  // returns an error after three polls
	faultStall = "stall" // stops polling after three polls, ends when told
	faultStuck = "stuck" // stops polling after three polls and ignores ctx
	// faultNoStart: the first Start fails (with starter: true only).
	faultNoStart = "nostart"
)

type faultySettings struct {
	PollInterval config.Duration `yaml:"poll_interval" json:"poll_interval" min:"1ms" doc:"time between polls"`
	Fault        string          `yaml:"fault" json:"fault" enum:"fail,stall,stuck,nostart" required:"true" doc:"what the first run does wrong"`
	// Starter makes the driver a drivers.Starter, as Modbus drivers are:
	// the agent starts it and keeps no goroutine for it.
	Starter bool `yaml:"starter" json:"starter" doc:"start without a goroutine of the agent's"`
}

func (*faultySettings) Check(*config.Checker) {}

// faultyRuns counts the runs of each faulty device, across the rebuilds of
// its driver; faultyRelease frees stuck runs.
var (
	faultyMu      sync.Mutex
	faultyRuns    = map[string]int{}
	faultyRelease = map[string]chan struct{}{}
)

// releaseFaulty lets the stuck run of device end.
func releaseFaulty(device string) {
	faultyMu.Lock()
	defer faultyMu.Unlock()
	if ch, ok := faultyRelease[device]; ok {
		close(ch)
		delete(faultyRelease, device)
	}
}

func (s *faultySettings) Build(env drivers.Env) (drivers.Driver, error) {
	d := &faultyDriver{device: env.Device, interval: s.PollInterval.Std(), fault: s.Fault}
	if s.Starter {
		return &faultyStarter{d}, nil
	}
	return d, nil
}

// faultyStarter is the faulty driver as a drivers.Starter: its run goes
// on a goroutine of its own, started by Start, and its first Start fails
// with the fault nostart.
type faultyStarter struct{ *faultyDriver }

func (d *faultyStarter) Start(ctx context.Context, emit drivers.Emit, ended func(error)) error {
	if d.fault == faultNoStart {
		faultyMu.Lock()
		faultyRuns[d.device]++
		first := faultyRuns[d.device] == 1
		faultyMu.Unlock()
		if first {
			return errors.New("injected failure: the device's port cannot be opened")
		}
	}
	go func() { ended(d.Run(ctx, emit)) }()
	return nil
}

type faultyDriver struct {
	device   string
	interval time.Duration
	fault    string
}

func (d *faultyDriver) Name() string { return "faulty:" + d.device }

func (d *faultyDriver) Run(ctx context.Context, emit drivers.Emit) error {
	faultyMu.Lock()
	faultyRuns[d.device]++
	first := faultyRuns[d.device] == 1
	release := faultyRelease[d.device]
	if first && d.fault == faultStuck && release == nil {
		release = make(chan struct{})
		faultyRelease[d.device] = release
	}
	faultyMu.Unlock()
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for polls := 1; ; polls++ {
		batch := drivers.NewBatch(1)
		emit(append(batch, drivers.Sample{Device: d.device, Tag: "count", Value: drivers.Int(int64(polls)), ReadTime: time.Now()}))
		if first && polls == 3 {
			switch d.fault {
			case faultFail:
				return errors.New("injected failure: the device's port vanished")
			case faultStall:
				<-ctx.Done()
				return nil
			case faultStuck:
				<-release
				return nil
			case faultNoStart:
				// Its fault is in Start: the run itself polls on.
			default:
				return fmt.Errorf("unknown fault %q", d.fault)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
