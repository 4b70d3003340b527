package buffer

import (
	"os"
	"testing"
	"time"
)

// TestBackgroundFlushCommitsAcks checks that acknowledgements reach the
// file without any Append, Flush or Close: a copy of the file (the state a
// crash would leave) eventually stops holding the acknowledged records.
func TestBackgroundFlushCommitsAcks(t *testing.T) {
	o := testOptions("q")
	o.FlushInterval = 5 * time.Millisecond
	b := openT(t, testPath(t), o)
	q := b.Queue("q")
	mustAppend(t, b, payloads("x", 10), nil)
	rs := readAll(t, q, 100)
	mustAck(t, q, positions(rs[:4])...)

	crashed := b.Path() + ".copy"
	co := testOptions("q")
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(b.Path())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crashed, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Open(crashed, co)
		if err != nil {
			t.Fatal(err)
		}
		n := c.Queue("q").Stats().Records
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if n == 6 {
			return
		}
		if n != 10 || time.Now().After(deadline) {
			t.Fatalf("copy holds %d records, want 6 once the flush ran", n)
		}
		time.Sleep(5 * time.Millisecond) // polling the file: nothing to wait on
	}
}
