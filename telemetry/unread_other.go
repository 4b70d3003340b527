//go:build !linux

package telemetry

import "net"

// hasUnread reports false: only Linux tells the server cheaply whether a
// client has sent bytes that were not read yet.
func hasUnread(net.Conn) bool { return false }
