package buffer

import "errors"

var (
	// ErrClosed is returned by operations on a closed Buffer.
	ErrClosed = errors.New("buffer closed")
	// ErrLocked is wrapped by Open's error when another process (or another
	// Open in this process) holds the file lock past Options.LockTimeout.
	ErrLocked = errors.New("buffer file locked by another process")
	// ErrCorrupt is wrapped by Open's error when the file is damaged and
	// Options.OnCorrupt is Fail.
	ErrCorrupt = errors.New("buffer file corrupt")
	// ErrFull is wrapped by Append's error when the disk, or
	// Options.MaxFileSize, leaves no room even after DropOldest dropped
	// old frames (or at once with DropNewest). Nothing was committed.
	ErrFull = errors.New("buffer file full")
	// ErrReadOnly is wrapped by the errors of Append, AppendTo, Flush and
	// Ack on a buffer opened with Options.ReadOnly.
	ErrReadOnly = errors.New("buffer opened read-only")
)
