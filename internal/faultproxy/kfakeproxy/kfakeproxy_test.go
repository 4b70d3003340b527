package kfakeproxy_test

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/iot-producer/iot-producer/internal/faultproxy"
	"github.com/iot-producer/iot-producer/internal/faultproxy/kfakeproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const topic = "samples"

// faultWait is how long a produce is given while the link is down; its
// failure within that time is the assertion.
const faultWait = time.Second

func newCluster(t *testing.T, opts ...kfake.Opt) *kfakeproxy.Cluster {
	t.Helper()
	c, err := kfakeproxy.NewCluster(opts...)
	if err != nil {
		t.Fatalf("NewCluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// dialLog records every address a client dials.
type dialLog struct {
	mu    sync.Mutex
	addrs []string
}

func (d *dialLog) dial(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, host)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, host)
}

func (d *dialLog) dialled() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.addrs)
}

func newClient(t *testing.T, seed string, log *dialLog, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(seed),
		kgo.Dialer(log.dial),
		kgo.DefaultProduceTopic(topic),
		// As the uplink does: a produce stuck on a dead link must fail.
		kgo.AllowIdempotentProduceCancellation(),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		// A produce waiting on a dead leader fails, and one after Restore
		// goes out, only once metadata is reloaded: at most every 5 s by
		// default.
		kgo.MetadataMinAge(100 * time.Millisecond),
		// A stalled connection is noticed only when a read times out, and
		// the produce context is not checked while a connection is being
		// set up: without these a stall costs 20 s or more.
		kgo.RequestTimeoutOverhead(time.Second),
		kgo.ProduceRequestTimeout(time.Second),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(ctx context.Context, cl *kgo.Client, value string) error {
	return cl.ProduceSync(ctx, kgo.StringRecord(value)).FirstErr()
}

func TestProduceSurvivesFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault func(*kfakeproxy.Cluster)
	}{
		{"cut", (*kfakeproxy.Cluster).Cut},
		{"stall", (*kfakeproxy.Cluster).Stall},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, kfake.NumBrokers(3), kfake.SeedTopics(1, topic))
			proxies := c.Proxies()
			proxyAddrs := make([]string, len(proxies))
			for i, p := range proxies {
				proxyAddrs[i] = p.Addr()
				if p.Target() == p.Addr() {
					t.Fatalf("proxy %d forwards to its own address %s", i, p.Addr())
				}
			}
			if got := c.ListenAddrs(); !slices.Equal(got, proxyAddrs) {
				t.Fatalf("ListenAddrs() = %v, want the proxies %v", got, proxyAddrs)
			}
			log := &dialLog{}
			// One seed only: the other brokers must come from metadata.
			cl := newClient(t, proxyAddrs[0], log)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			if err := produce(ctx, cl, "before"); err != nil {
				t.Fatalf("produce before the fault: %v", err)
			}

			tt.fault(c)
			faultCtx, faultCancel := context.WithTimeout(ctx, faultWait)
			err := produce(faultCtx, cl, "during")
			faultCancel()
			if err == nil {
				t.Fatalf("produce during %s succeeded: the client bypassed the proxies", tt.name)
			}
			t.Logf("produce during %s: %v", tt.name, err)

			c.Restore()
			if err := produce(ctx, cl, "after"); err != nil {
				t.Fatalf("produce after Restore: %v", err)
			}

			// Metadata advertises the proxies, not the brokers' own ports.
			resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
			if err != nil {
				t.Fatalf("metadata: %v", err)
			}
			for _, b := range resp.Brokers {
				addr := net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
				if !slices.Contains(proxyAddrs, addr) {
					t.Errorf("metadata advertises broker %d at %s, not a proxy %v", b.NodeID, addr, proxyAddrs)
				}
			}

			// Read both records back, through the proxies too.
			consumer := newClient(t, proxyAddrs[0], log,
				kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			want := map[string]bool{"before": false, "after": false}
			for !want["before"] || !want["after"] {
				fetches := consumer.PollFetches(ctx)
				if err := ctx.Err(); err != nil {
					t.Fatalf("consuming: %v; seen %v", err, want)
				}
				fetches.EachRecord(func(r *kgo.Record) { want[string(r.Value)] = true })
			}

			for _, addr := range log.dialled() {
				if !slices.Contains(proxyAddrs, addr) {
					t.Errorf("a client dialled %s, which is not a proxy %v", addr, proxyAddrs)
				}
			}
			st := c.Stats()
			if st.ClientToTarget == 0 || st.TargetToClient == 0 || st.DialErrors != 0 {
				t.Errorf("proxy Stats = %+v, want bytes both ways and no dial errors", st)
			}
			t.Logf("proxy Stats: %+v; dialled %d times", st, len(log.dialled()))
		})
	}
}

func TestPortsSetTheAdvertisedPort(t *testing.T) {
	// Take a free port for the proxy to listen on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	want := ln.Addr().String()
	_ = ln.Close()
	_, port, _ := net.SplitHostPort(want)

	c := newCluster(t, kfake.NumBrokers(1), kfake.Ports(mustAtoi(t, port)), kfake.SeedTopics(1, topic))
	proxies := c.Proxies()
	if len(proxies) != 1 || proxies[0].Addr() != want {
		t.Fatalf("proxies listen on %v, want [%s]", addrs(proxies), want)
	}
	cl := newClient(t, want, &dialLog{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := produce(ctx, cl, "x"); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func TestAddAndRemoveNode(t *testing.T) {
	c := newCluster(t, kfake.NumBrokers(1))
	id, port, err := c.AddNode(-1, 0)
	if err != nil {
		t.Fatalf("AddNode: %v", err)
	}
	proxies := c.Proxies()
	if len(proxies) != 2 {
		t.Fatalf("%d proxies after AddNode, want 2", len(proxies))
	}
	added := proxies[1]
	if _, p, _ := net.SplitHostPort(added.Addr()); p != strconv.Itoa(port) {
		t.Fatalf("AddNode reports port %d, the new proxy listens on %s", port, added.Addr())
	}
	if err := c.RemoveNode(id); err != nil {
		t.Fatalf("RemoveNode(%d): %v", id, err)
	}
	// The removed broker's advertised port stops answering, as a real
	// broker's would.
	if conn, err := net.DialTimeout("tcp", added.Addr(), time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("removed node's proxy %s still accepts", added.Addr())
	}
}

func TestCloseStopsProxies(t *testing.T) {
	c, err := kfakeproxy.NewCluster(kfake.NumBrokers(2))
	if err != nil {
		t.Fatal(err)
	}
	proxies := c.Proxies()
	c.Close()
	for _, p := range proxies {
		if conn, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
			_ = conn.Close()
			t.Errorf("proxy %s still accepts after Close", p.Addr())
		}
	}
}

func addrs(ps []*faultproxy.Proxy) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Addr()
	}
	return out
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("port %q: %v", s, err)
	}
	return n
}
