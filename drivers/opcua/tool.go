package opcua

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/iot-producer/iot-producer/drivers"
)

// Session is a connection for the commissioning commands (browse, read):
// the same endpoint choice, trust list and authentication as the driver.
type Session struct {
	c    *opcua.Client
	ns   []string
	stop func()
	cfg  Config
}

// Dial opens a session as the driver would for cfg (which needs no tags),
// with the identity and trust list under stateDir.
func Dial(ctx context.Context, cfg *Config, stateDir string) (*Session, error) {
	c := *cfg
	if len(c.Tags) == 0 {
		c.Tags = []Tag{{Name: "x", Address: "i=2259"}}
	}
	d, err := NewDriver(Options{Name: "cli", Config: &c, StateDir: stateDir})
	if err != nil {
		return nil, err
	}
	cl, _, stop, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	s := &Session{c: cl, stop: stop, cfg: d.cfg}
	cctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout.Std())
	defer cancel()
	if s.ns, err = cl.NamespaceArray(cctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("reading the namespace array: %w", err)
	}
	return s, nil
}

// Close ends the session.
func (s *Session) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout.Std())
	defer cancel()
	_ = s.c.Close(ctx)
	s.stop()
}

// Namespaces returns the server's namespace array.
func (s *Session) Namespaces() []string { return s.ns }

// node resolves a node id in any notation, or a browse path.
func (s *Session) node(ctx context.Context, node string) (*ua.NodeID, error) {
	if node == "" {
		return ua.NewNumericNodeID(0, id.ObjectsFolder), nil
	}
	r, err := ParseNode(node)
	if err != nil {
		p, perr := ParsePath(node)
		if perr != nil || !strings.Contains(node, ":") {
			return nil, err
		}
		return resolvePath(ctx, s.c, s.ns, p)
	}
	return r.Resolve(s.ns)
}

// Reading is one value read by the read command.
type Reading struct {
	Node       string
	Type       string
	Value      drivers.Value
	Quality    drivers.Quality
	Status     string
	SourceTime time.Time
	ServerTime time.Time
	// Err says why the value could not be converted; the sample would be
	// bad.
	Err error
}

// Read reads one node's value.
func (s *Session) Read(ctx context.Context, node string) (Reading, error) {
	n, err := s.node(ctx, node)
	if err != nil {
		return Reading{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout.Std())
	defer cancel()
	res, err := s.c.Read(cctx, &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth,
		NodesToRead: []*ua.ReadValueID{{NodeID: n, AttributeID: ua.AttributeIDValue}}})
	if err != nil {
		return Reading{}, fmt.Errorf("reading %s: %w", node, err)
	}
	if len(res.Results) != 1 {
		return Reading{}, fmt.Errorf("reading %s: %d results", node, len(res.Results))
	}
	dv := res.Results[0]
	r := Reading{Node: s.display(n), SourceTime: dv.SourceTimestamp, ServerTime: dv.ServerTimestamp}
	r.Quality, r.Status = Quality(dv.Status)
	if dv.Value != nil {
		r.Type = strings.TrimPrefix(dv.Value.Type().String(), "TypeID")
		r.Value, r.Err = Convert(dv.Value)
	}
	return r, nil
}

// display writes a node id with its namespace URI instead of its index,
// the form to put in a config.
func (s *Session) display(n *ua.NodeID) string {
	str := n.String()
	ns := int(n.Namespace())
	if ns == 0 || ns >= len(s.ns) {
		return str
	}
	if i := strings.Index(str, ";"); i >= 0 {
		return "nsu=" + s.ns[ns] + str[i:]
	}
	return str
}

// Entry is one node met by Browse.
type Entry struct {
	Depth      int
	Node       string
	BrowseName string
	Class      string
	DataType   string
	Access     string
}

// Browse walks the address space from node (the Objects folder when
// empty) down to depth levels, calling visit for every node.
func (s *Session) Browse(ctx context.Context, node string, depth int, visit func(Entry)) error {
	start, err := s.node(ctx, node)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var walk func(n *ua.NodeID, level int) error
	walk = func(n *ua.NodeID, level int) error {
		if level > depth || seen[n.String()] {
			return nil
		}
		seen[n.String()] = true
		cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout.Std())
		refs, err := s.c.Node(n).References(cctx, id.HierarchicalReferences, ua.BrowseDirectionForward, ua.NodeClassAll, true)
		cancel()
		if err != nil {
			return fmt.Errorf("browsing %s: %w", s.display(n), err)
		}
		listed := map[string]bool{}
		for _, r := range refs {
			if r.NodeID == nil || r.NodeID.NodeID == nil || listed[r.NodeID.NodeID.String()] {
				continue
			}
			child := r.NodeID.NodeID
			listed[child.String()] = true
			e := Entry{Depth: level, Node: s.display(child), Class: strings.TrimPrefix(r.NodeClass.String(), "NodeClass")}
			if r.BrowseName != nil {
				e.BrowseName = r.BrowseName.Name
				if r.BrowseName.NamespaceIndex != 0 {
					e.BrowseName = fmt.Sprintf("%d:%s", r.BrowseName.NamespaceIndex, r.BrowseName.Name)
				}
			}
			if r.NodeClass == ua.NodeClassVariable {
				e.DataType, e.Access = s.variableInfo(ctx, child)
			}
			visit(e)
			if err := walk(child, level+1); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(start, 0)
}

// variableInfo reads a variable's data type and access level.
func (s *Session) variableInfo(ctx context.Context, n *ua.NodeID) (string, string) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout.Std())
	defer cancel()
	res, err := s.c.Read(cctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: n, AttributeID: ua.AttributeIDDataType},
		{NodeID: n, AttributeID: ua.AttributeIDAccessLevel},
	}})
	if err != nil || len(res.Results) != 2 {
		return "?", "?"
	}
	dt := "?"
	if v := res.Results[0].Value; v != nil {
		var t *ua.NodeID
		switch x := v.Value().(type) {
		case *ua.NodeID:
			t = x
		case *ua.ExpandedNodeID:
			t = x.NodeID
		}
		if t != nil {
			dt = t.String()
			if t.Namespace() == 0 && t.IntID() > 0 && t.IntID() <= 25 {
				dt = ua.TypeID(t.IntID()).String()
			}
		}
	}
	acc := "?"
	if v := res.Results[1].Value; v != nil {
		if b, ok := v.Value().(uint8); ok {
			var parts []string
			if b&uint8(ua.AccessLevelTypeCurrentRead) != 0 {
				parts = append(parts, "read")
			}
			if b&uint8(ua.AccessLevelTypeCurrentWrite) != 0 {
				parts = append(parts, "write")
			}
			if b&uint8(ua.AccessLevelTypeHistoryRead) != 0 {
				parts = append(parts, "history")
			}
			acc = strings.Join(parts, ",")
			if acc == "" {
				acc = "none"
			}
		}
	}
	return dt, acc
}

// ServerCertificates returns the certificates a server presents on its
// endpoints, one per distinct certificate, without a session.
func ServerCertificates(ctx context.Context, endpoint string, timeout time.Duration) ([][]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	eps, err := opcua.GetEndpoints(cctx, endpoint, opcua.DialTimeout(timeout), opcua.RequestTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("getting the endpoints of %s: %w", endpoint, err)
	}
	var out [][]byte
	seen := map[string]bool{}
	for _, e := range eps {
		if len(e.ServerCertificate) == 0 || seen[string(e.ServerCertificate)] {
			continue
		}
		seen[string(e.ServerCertificate)] = true
		out = append(out, e.ServerCertificate)
	}
	return out, nil
}
