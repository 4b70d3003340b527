package mqtt

import (
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// store is the paho client's message store. paho keeps every QoS 1 and 2
// publish in its store from the moment it is handed over until the broker
// acknowledges it, deletes it on PUBACK (PUBCOMP for QoS 2), and resends
// what the store holds, in the store's order, after each reconnect.
//
// Owning the store does three things paho's own stores do not:
//
//   - Delete is the acknowledgement. paho's tokens cannot serve: when it
//     resends a stored message after a reconnect it completes the original
//     token without error before the broker has acknowledged anything.
//     Each publish is bound to the batch it belongs to when paho stores
//     it, and the batch learns of the PUBACK when paho deletes it.
//   - It keeps insertion order, so a resend keeps the order per device.
//   - It counts what it holds, so that the sink refuses new publishes
//     rather than letting paho's memory become a second, unbounded buffer
//     beside the bbolt queue.
type store struct {
	mu      sync.Mutex
	entries map[string]*entry
	seq     uint64
	pubs    int // outbound publishes held
	// bind is the message the next outbound publish belongs to; the sink
	// sets it, under its publish lock, around each Publish call.
	bind ref
}

// ref is one message of one batch.
type ref struct {
	t *tracker
	i int
}

type entry struct {
	seq uint64
	p   packets.ControlPacket
	pub bool // an outbound publish (or the PUBREL that replaced it)
	ref ref
}

func newStore() *store {
	return &store{entries: map[string]*entry{}}
}

// errSessionReset fails messages that a clean session discarded.
var errSessionReset = errors.New("MQTT session reset before the broker acknowledged the message")

// Open implements paho's Store; the store lives as long as the sink.
func (s *store) Open() {}

// Close implements paho's Store. paho closes its store when a connection
// attempt fails and on Disconnect; what it holds must survive both.
func (s *store) Close() {}

// Put implements paho's Store.
func (s *store) Put(key string, p packets.ControlPacket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok {
		// A PUBREL replacing its QoS 2 publish keeps the publish's place.
		e.p = p
		if _, isPub := p.(*packets.PublishPacket); isPub && strings.HasPrefix(key, "o.") {
			e.ref, s.bind = s.bind, ref{}
		}
		return
	}
	s.seq++
	e := &entry{seq: s.seq, p: p}
	if _, isPub := p.(*packets.PublishPacket); isPub && strings.HasPrefix(key, "o.") {
		e.pub = true
		e.ref, s.bind = s.bind, ref{}
		s.pubs++
	}
	s.entries[key] = e
}

// Get implements paho's Store.
func (s *store) Get(key string) packets.ControlPacket {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok {
		return e.p
	}
	return nil
}

// All implements paho's Store: the keys in the order they were put.
func (s *store) All() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.entries))
	for k := range s.entries {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		ea, eb := s.entries[a], s.entries[b]
		switch {
		case ea.seq < eb.seq:
			return -1
		case ea.seq > eb.seq:
			return 1
		}
		return 0
	})
	return keys
}

// Del implements paho's Store. For an outbound publish it is the broker's
// acknowledgement.
func (s *store) Del(key string) {
	s.mu.Lock()
	e, ok := s.entries[key]
	if !ok {
		s.mu.Unlock()
		return
	}
	delete(s.entries, key)
	if e.pub {
		s.pubs--
	}
	s.mu.Unlock()
	if e.ref.t != nil {
		e.ref.t.ack(e.ref.i)
	}
}

// Reset implements paho's Store: paho calls it when a clean session
// starts, and everything held is gone for good.
func (s *store) Reset() { s.failAll(errSessionReset) }

// failAll forgets everything and fails the messages it held.
func (s *store) failAll(err error) {
	s.mu.Lock()
	old := s.entries
	s.entries = map[string]*entry{}
	s.pubs = 0
	s.mu.Unlock()
	for _, e := range old {
		if e.ref.t != nil {
			e.ref.t.failOne(e.ref.i, err)
		}
	}
}

// setBind names the batch message the next outbound publish belongs to.
func (s *store) setBind(r ref) {
	s.mu.Lock()
	s.bind = r
	s.mu.Unlock()
}

// clearBind forgets a binding paho did not use (the publish failed before
// it was stored).
func (s *store) clearBind() {
	s.mu.Lock()
	s.bind = ref{}
	s.mu.Unlock()
}

// held returns the number of outbound publishes awaiting acknowledgement.
func (s *store) held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pubs
}
