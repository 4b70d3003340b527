// Package crash holds the buffer's crash and fault tests: a child process
// appends and acknowledges under load and is killed with SIGKILL at random
// moments, and the parent checks after each kill that the file kept every
// commit the child saw succeed, in order, with matching sequence metadata
// and a consistent bbolt structure; and the ingest stage on top of the
// buffer rides out a full disk. It holds tests only; nothing imports it.
package crash
