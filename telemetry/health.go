package telemetry

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// State is the state of one component of the pipeline, as /ready shows it.
type State string

// Component states.
const (
	// StateStarting: the component is being built or connecting for the
	// first time. Not ready.
	StateStarting State = "starting"
	// StateOK: the component works. Ready.
	StateOK State = "ok"
	// StateDegraded: the component runs but not well (for example a sink
	// backing off while the broker is unreachable: samples still go to the
	// buffer). Still ready.
	StateDegraded State = "degraded"
	// StateDown: the component failed and is not running. Not ready.
	StateDown State = "down"
	// StateStopped: the component was stopped (shutdown). Not ready.
	StateStopped State = "stopped"
)

// readyState reports whether a component in state s lets the pipeline be
// ready. Unknown states are not ready.
func readyState(s State) bool { return s == StateOK || s == StateDegraded }

// ComponentStatus is one component's entry in a Health snapshot and in the
// /ready body.
type ComponentStatus struct {
	// Name identifies the component, for example "buffer" or "sink/kafka".
	Name string `json:"name"`
	// State is the component's current state.
	State State `json:"state"`
	// Detail says why, in words for an operator; may be empty.
	Detail string `json:"detail"`
	// Since is when the component entered State.
	Since time.Time `json:"since"`
	// External marks a component outside the gateway (a PLC): its state
	// is shown but does not decide readiness (see SetExternal).
	External bool `json:"external,omitempty"`
	// Restarts counts the times the agent restarted the component (it
	// stopped with an error, or made no progress while it had work);
	// LastRestart says when and why. Both outlive state changes.
	Restarts    uint64       `json:"restarts,omitempty"`
	LastRestart *RestartNote `json:"last_restart,omitempty"`
}

// RestartNote is the last restart of a component.
type RestartNote struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Health records the state of each component of the pipeline and derives
// readiness from them. The zero value is ready to use; it is safe for
// concurrent use and must not be copied after first use.
type Health struct {
	mu       sync.Mutex
	comps    map[string]ComponentStatus
	warnings []string
	// now is the clock; nil means time.Now. Tests replace it.
	now func() time.Time
}

// NewHealth returns an empty Health, equivalent to new(Health).
func NewHealth() *Health { return new(Health) }

// Set records that component is in state, with detail for an operator.
// Since is updated only when the state changes; a new detail alone keeps it.
func (h *Health) Set(component string, state State, detail string) {
	h.set(component, state, detail, false)
}

// SetExternal records the state of a component outside the gateway, a PLC
// seen through its driver: /ready shows it (down when every read fails,
// degraded when some do), but it does not make the gateway unready, since
// the pipeline itself still runs and a failing PLC is not fixed by
// restarting or removing the gateway. Since works as for Set.
func (h *Health) SetExternal(component string, state State, detail string) {
	h.set(component, state, detail, true)
}

func (h *Health) set(component string, state State, detail string, external bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.comps == nil {
		h.comps = make(map[string]ComponentStatus)
	}
	cur, ok := h.comps[component]
	if !ok || cur.State != state {
		cur = ComponentStatus{Name: component, State: state, Since: h.clock(), Restarts: cur.Restarts, LastRestart: cur.LastRestart}
	}
	cur.Detail = detail
	cur.External = external
	h.comps[component] = cur
}

// Restarted records that the agent restarted component, for the reason
// given; /ready shows the count and the last one.
func (h *Health) Restarted(component, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.comps == nil {
		h.comps = make(map[string]ComponentStatus)
	}
	cur, ok := h.comps[component]
	if !ok {
		cur = ComponentStatus{Name: component, State: StateStarting, Since: h.clock()}
	}
	cur.Restarts++
	cur.LastRestart = &RestartNote{At: h.clock(), Reason: reason}
	h.comps[component] = cur
}

// SetWarnings replaces the configuration's security warnings that /ready
// shows (for example "producer.tls.insecure_skip_verify: server
// certificates are not verified"). They do not change readiness.
func (h *Health) SetWarnings(warnings []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.warnings = slices.Clone(warnings)
}

// Warnings returns the warnings set by SetWarnings; nil when there are none.
func (h *Health) Warnings() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.warnings)
}

// Remove forgets component, for example a PLC removed by a reload. It does
// nothing if component is not registered.
func (h *Health) Remove(component string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.comps, component)
}

// Ready reports whether at least one component is registered and every
// component but the external ones (SetExternal) is StateOK or
// StateDegraded (none is starting, down or stopped).
func (h *Health) Ready() bool {
	ready, _ := h.status()
	return ready
}

// Snapshot returns every component's status sorted by name. The slice is
// the caller's and never nil, so it encodes to a JSON array.
func (h *Health) Snapshot() []ComponentStatus {
	_, comps := h.status()
	return comps
}

// status returns readiness and the sorted snapshot taken under one lock, so
// that /ready never shows a verdict that contradicts its component list.
func (h *Health) status() (bool, []ComponentStatus) {
	h.mu.Lock()
	out := make([]ComponentStatus, 0, len(h.comps))
	ready := len(h.comps) > 0
	for _, c := range h.comps {
		out = append(out, c)
		ready = ready && (c.External || readyState(c.State))
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b ComponentStatus) int { return strings.Compare(a.Name, b.Name) })
	return ready, out
}

// clock returns the current time from h.now or time.Now.
func (h *Health) clock() time.Time {
	if h.now != nil {
		return h.now()
	}
	return time.Now()
}
