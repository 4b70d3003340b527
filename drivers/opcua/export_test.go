package opcua

import "time"

// SetChannelLifetime sets the secure channel lifetime a driver asks for,
// so that a test sees channels renewed within seconds.
func SetChannelLifetime(d *Driver, l time.Duration) { d.channelLifetime = l }
