package opcua

import (
	"strings"
	"testing"

	"github.com/gopcua/opcua/ua"
)

// FuzzParseNode: no input makes the parser or the resolver panic; a node
// id the parser accepts prints back as written, resolves into its
// namespace against an array that has its URI, and parses again as the
// same thing.
func FuzzParseNode(f *testing.F) {
	for _, s := range []string{"i=2258", "ns=2;s=Line1.Temp", "nsu=urn:a;i=5", "ns=1;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63",
		"ns=1;b=AQID", "nsu=urn:a;s=x;y", "ns=65535;i=4294967295", "ns=;i=1", "s=", "b=====", "g=-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseNode(s)
		if err != nil {
			return
		}
		if r.String() != s && !(strings.HasPrefix(s, "ns=0;") && r.String() == s[5:]) && !strings.HasPrefix(s, "ns=0") {
			t.Fatalf("%q prints as %q", s, r.String())
		}
		ns := []string{"http://opcfoundation.org/UA/", "urn:a"}
		if r.URI != "" {
			ns = append(ns, r.URI)
		}
		n, err := r.Resolve(ns)
		if err != nil {
			// Numeric ids beyond what the encoding of their namespace
			// holds are the only refusals left.
			if !strings.HasPrefix(r.ID, "i=") {
				t.Fatalf("%q parsed but does not resolve: %v", s, err)
			}
			return
		}
		want := r.NS
		if r.URI != "" {
			want = uint16(len(ns) - 1)
			if r.URI == "urn:a" {
				want = 1
			}
		}
		if n.Namespace() != want && n.Type() != ua.NodeIDTypeTwoByte {
			t.Fatalf("%q resolves to %s, in namespace %d, want %d", s, n, n.Namespace(), want)
		}
		if r2, err := ParseNode(r.String()); err != nil || r2 != r {
			t.Fatalf("%q: printed %q parses as %+v, %v", s, r.String(), r2, err)
		}
	})
}
