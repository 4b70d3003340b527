package opcua

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// NodeRef is a node id as written in the config: an identifier (i=, s=, g=
// or b=) in a namespace named by its index (ns=2;) or by its URI
// (nsu=urn:…;). A URI is looked up in the server's namespace array at each
// connect, so a server that renumbers its namespaces does not break the
// config.
type NodeRef struct {
	// URI is the namespace URI; empty when the index is given.
	URI string
	// NS is the namespace index when URI is empty.
	NS uint16
	// ID is the identifier part: "i=2258", "s=Line1.Temp",
	// "g=72962B91-FA75-4AE6-8D28-B404DC7DAF63" or "b=AQID".
	ID string
}

// ParseNode parses ns=<index>;<id>, nsu=<uri>;<id> or <id> alone (namespace
// 0), where <id> is i=<uint32>, s=<string>, g=<guid> or b=<base64>.
func ParseNode(s string) (NodeRef, error) {
	var r NodeRef
	rest := s
	switch {
	case strings.HasPrefix(s, "nsu="):
		i := strings.Index(s, ";")
		if i < 0 {
			return r, fmt.Errorf("%q: nsu=<namespace uri> must be followed by ;i=, ;s=, ;g= or ;b=", s)
		}
		r.URI, rest = s[4:i], s[i+1:]
		if r.URI == "" {
			return r, fmt.Errorf("%q: the namespace uri is empty", s)
		}
	case strings.HasPrefix(s, "ns="):
		i := strings.Index(s, ";")
		if i < 0 {
			return r, fmt.Errorf("%q: ns=<index> must be followed by ;i=, ;s=, ;g= or ;b=", s)
		}
		n, err := strconv.ParseUint(s[3:i], 10, 16)
		if err != nil {
			return r, fmt.Errorf("%q: namespace index %q is not a number from 0 to 65535", s, s[3:i])
		}
		r.NS, rest = uint16(n), s[i+1:]
	}
	r.ID = rest
	if err := checkID(rest); err != nil {
		return r, fmt.Errorf("%q: %w", s, err)
	}
	return r, nil
}

// checkID checks the identifier part of a node id.
func checkID(s string) error {
	if len(s) < 3 || s[1] != '=' {
		return fmt.Errorf("a node id looks like ns=2;s=Line1.Temp, nsu=urn:plant:line1;i=1001, i=2258, g=<guid> or b=<base64>")
	}
	v := s[2:]
	switch s[0] {
	case 'i':
		if n, err := strconv.ParseUint(v, 10, 64); err != nil || n > math.MaxUint32 {
			return fmt.Errorf("numeric identifier %q is not a number from 0 to 4294967295", v)
		}
	case 's':
	case 'g':
		if n := ua.NewGUIDNodeID(0, v); n == nil || n.StringID() == "" || len(strings.ReplaceAll(v, "-", "")) != 32 {
			return fmt.Errorf("GUID identifier %q is not of the form 72962B91-FA75-4AE6-8D28-B404DC7DAF63", v)
		}
	case 'b':
		if _, err := base64.StdEncoding.DecodeString(v); err != nil {
			return fmt.Errorf("opaque identifier %q is not standard base64", v)
		}
	default:
		return fmt.Errorf("identifier type %q is not i, s, g or b", s[:1])
	}
	return nil
}

// String returns the node id in the notation it was written in.
func (r NodeRef) String() string {
	switch {
	case r.URI != "":
		return "nsu=" + r.URI + ";" + r.ID
	case r.NS != 0:
		return "ns=" + strconv.Itoa(int(r.NS)) + ";" + r.ID
	}
	return r.ID
}

// Resolve returns the node id for a server whose namespace array is ns.
func (r NodeRef) Resolve(ns []string) (*ua.NodeID, error) {
	idx := r.NS
	if r.URI != "" {
		found := false
		for i, u := range ns {
			if u == r.URI {
				idx, found = uint16(i), true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("namespace %q is not in the server's namespace array %q", r.URI, ns)
		}
	}
	n, err := ua.ParseNodeID("ns=" + strconv.Itoa(int(idx)) + ";" + r.ID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	return n, nil
}

// PathElement is one step of a browse path: a browse name in a namespace
// named by index or URI.
type PathElement struct {
	URI  string
	NS   uint16
	Name string
}

// ParsePath parses a browse path from the Objects folder: elements
// separated by "/", each "<ns>:<name>" with a namespace index, "<uri>:<name>"
// with a namespace URI (everything before the last colon), or "<name>" in
// namespace 0. "2:Line1/2:Temperature" and
// "urn:plant:line1:Line1/urn:plant:line1:Temperature" name the same node
// when the URI has index 2.
func ParsePath(s string) ([]PathElement, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "/"), "Objects/")
	if s == "" {
		return nil, fmt.Errorf("the browse path is empty")
	}
	var out []PathElement
	for _, part := range strings.Split(s, "/") {
		if part == "" {
			return nil, fmt.Errorf("browse path %q has an empty element", s)
		}
		e := PathElement{Name: part}
		if i := strings.LastIndex(part, ":"); i >= 0 {
			prefix := part[:i]
			e.Name = part[i+1:]
			if n, err := strconv.ParseUint(prefix, 10, 16); err == nil {
				e.NS = uint16(n)
			} else {
				e.URI = prefix
			}
		}
		if e.Name == "" {
			return nil, fmt.Errorf("browse path %q: element %q has no name", s, part)
		}
		out = append(out, e)
	}
	return out, nil
}

// resolvePath walks a browse path from the Objects folder with Browse
// calls (servers that do not implement TranslateBrowsePathsToNodeIds, such
// as gopcua's, answer Browse).
func resolvePath(ctx context.Context, c *opcua.Client, ns []string, path []PathElement) (*ua.NodeID, error) {
	cur := ua.NewNumericNodeID(0, id.ObjectsFolder)
	for i, e := range path {
		idx := e.NS
		if e.URI != "" {
			found := false
			for j, u := range ns {
				if u == e.URI {
					idx, found = uint16(j), true
				}
			}
			if !found {
				return nil, fmt.Errorf("browse path element %d: namespace %q is not in the server's namespace array", i+1, e.URI)
			}
		}
		refs, err := c.Node(cur).References(ctx, id.HierarchicalReferences, ua.BrowseDirectionForward, ua.NodeClassAll, true)
		if err != nil {
			return nil, fmt.Errorf("browse path element %d (%s): browsing %s: %w", i+1, e.Name, cur, err)
		}
		var next *ua.NodeID
		for _, r := range refs {
			if r.BrowseName != nil && r.BrowseName.Name == e.Name && r.BrowseName.NamespaceIndex == idx && r.NodeID != nil {
				next = r.NodeID.NodeID
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("browse path element %d: %s has no child %d:%s", i+1, cur, idx, e.Name)
		}
		cur = next
	}
	return cur, nil
}
