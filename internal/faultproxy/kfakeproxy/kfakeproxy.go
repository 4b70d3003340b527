// Package kfakeproxy runs a kfake cluster whose brokers can be reached only
// through faultproxy proxies, so tests can cut and stall the link between a
// Kafka client and the fake brokers.
//
// A Kafka client learns broker addresses from metadata, so a plain proxy in
// front of a cluster is bypassed after the first metadata request. Here each
// kfake broker listens on an internal port of 127.0.0.1 while its proxy
// listens on the port the broker advertises: kfake takes the advertised
// host:port from its listener's Addr(), and the listener kfakeproxy hands it
// reports the proxy's address. Clients need no dialer hook and no change.
//
// It owns the proxies and the internal listeners; it knows nothing about the
// code under test.
package kfakeproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/iot-producer/iot-producer/internal/faultproxy"
)

// Cluster is a kfake cluster behind one faultproxy.Proxy per broker. The
// embedded *kfake.Cluster works as usual; its ListenAddrs returns the
// proxies' addresses, which are also what metadata advertises.
type Cluster struct {
	*kfake.Cluster

	mu      sync.Mutex
	proxies []*faultproxy.Proxy
	lns     []*listener
}

// NewCluster starts a kfake cluster with opts, each broker behind its own
// proxy. kfake.Ports sets the ports the proxies listen on (the advertised
// ports); the brokers' own ports are always chosen at random. A
// kfake.ListenFn in opts is overridden. Brokers added later with AddNode get a
// proxy too.
func NewCluster(opts ...kfake.Opt) (*Cluster, error) {
	c := &Cluster{}
	opts = append(opts[:len(opts):len(opts)], kfake.ListenFn(c.listen))
	kc, err := kfake.NewCluster(opts...)
	if err != nil {
		// kfake does not close the listeners it made before failing.
		c.mu.Lock()
		lns := c.lns
		c.mu.Unlock()
		for _, ln := range lns {
			_ = ln.Close()
		}
		return nil, fmt.Errorf("kfakeproxy: start kfake: %w", err)
	}
	c.Cluster = kc
	return c, nil
}

// Proxies returns the proxies in the order the brokers were created, which
// is node id order for the brokers NewCluster starts.
func (c *Cluster) Proxies() []*faultproxy.Proxy {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*faultproxy.Proxy(nil), c.proxies...)
}

// Cut cuts every broker's proxy; see faultproxy.Proxy.Cut.
func (c *Cluster) Cut() {
	for _, p := range c.Proxies() {
		p.Cut()
	}
}

// Stall stalls every broker's proxy; see faultproxy.Proxy.Stall.
func (c *Cluster) Stall() {
	for _, p := range c.Proxies() {
		p.Stall()
	}
}

// Restore restores every broker's proxy; see faultproxy.Proxy.Restore.
func (c *Cluster) Restore() {
	for _, p := range c.Proxies() {
		p.Restore()
	}
}

// Stats returns the sum of every proxy's counters. Mode is the first proxy's.
func (c *Cluster) Stats() faultproxy.Stats {
	var sum faultproxy.Stats
	for i, p := range c.Proxies() {
		st := p.Stats()
		if i == 0 {
			sum.Mode = st.Mode
		}
		sum.Accepted += st.Accepted
		sum.Refused += st.Refused
		sum.Open += st.Open
		sum.Dials += st.Dials
		sum.DialErrors += st.DialErrors
		sum.ClientToTarget += st.ClientToTarget
		sum.TargetToClient += st.TargetToClient
	}
	return sum
}

// Close shuts the kfake cluster down, then closes every proxy and waits for
// their goroutines.
func (c *Cluster) Close() {
	c.Cluster.Close()
	for _, p := range c.Proxies() {
		_ = p.Close()
	}
}

// listen is kfake's ListenFn: it listens on a random internal port and puts
// a proxy on address, the address kfake asked for and will advertise.
func (c *Cluster) listen(network, address string) (net.Listener, error) {
	inner, err := net.Listen(network, "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kfakeproxy: internal listener for %s: %w", address, err)
	}
	p, err := faultproxy.Listen(address, inner.Addr().String())
	if err != nil {
		_ = inner.Close()
		return nil, err
	}
	ap, err := netip.ParseAddrPort(p.Addr())
	if err != nil {
		_ = p.Close()
		_ = inner.Close()
		return nil, fmt.Errorf("kfakeproxy: proxy address %s: %w", p.Addr(), err)
	}
	ln := &listener{Listener: inner, proxy: p, addr: net.TCPAddrFromAddrPort(ap)}
	c.mu.Lock()
	c.proxies = append(c.proxies, p)
	c.lns = append(c.lns, ln)
	c.mu.Unlock()
	return ln, nil
}

// listener is a broker's internal listener that reports its proxy's address,
// so kfake advertises the proxy. Closing it closes the proxy too, as a
// removed broker's port stops answering.
type listener struct {
	net.Listener
	proxy *faultproxy.Proxy
	addr  net.Addr
}

// Addr returns the proxy's address.
func (l *listener) Addr() net.Addr { return l.addr }

// Close closes the internal listener and the proxy.
func (l *listener) Close() error {
	return errors.Join(l.Listener.Close(), l.proxy.Close())
}
