// Package opcua owns the OPC UA driver: it reads nodes of an OPC UA server
// by subscription (monitored items the server samples and pushes) or by
// polling (a batched Read each interval), maps status codes to qualities
// and every scalar type to a sample value, keeps source timestamps, and
// rebuilds its session without an operator when the server restarts, the
// network is cut or the session expires.
//
// It uses github.com/gopcua/opcua with the library's automatic reconnection
// off: after a failure the driver closes the client and builds a new one
// with capped backoff, looks namespace URIs and browse paths up again and
// creates its subscriptions anew, so a server that renumbered its
// namespaces or lost its subscriptions in a restart is handled the same
// way as a cut cable.
//
// Security: the agent has its own application instance certificate, made
// on first use under <state_dir>/opcua/own, and a trust list of server
// certificates under <state_dir>/opcua/trusted. A server certificate that
// is not in the list is refused (and saved under rejected/) with a message
// naming `iot-producer opcua trust`, unless trust_on_first_use is set.
//
// It knows the drivers.Sample model and the agent/config types of its own
// config section; nothing of the buffer or any sink.
package opcua
