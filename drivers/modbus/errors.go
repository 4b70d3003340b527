package modbus

import (
	"errors"
	"fmt"
	"net"
	"os"

	gmodbus "github.com/goburrow/modbus"
)

// Error kinds, the kind label of iot_driver_errors_total.
const (
	// KindTimeout: no complete answer within the request timeout.
	KindTimeout = "timeout"
	// KindConnect: the connection or serial port could not be opened.
	KindConnect = "connect"
	// KindUnavailable: the request was not sent because the endpoint is
	// waiting before its next connection attempt.
	KindUnavailable = "unavailable"
	// KindException: the device answered with a Modbus exception.
	KindException = "exception"
	// KindMalformed: the answer broke the protocol (bad length, CRC,
	// function code, unit id or quantity).
	KindMalformed = "malformed"
	// KindIO: the connection broke (reset, closed by the peer).
	KindIO = "io"
	// KindBusy: the device answered Busy (exception 6); the request is
	// sent again while the poll interval lasts.
	KindBusy = "busy"
)

// Exception codes with their own handling.
const (
	ExceptionIllegalDataAddress = gmodbus.ExceptionCodeIllegalDataAddress
	ExceptionBusy               = gmodbus.ExceptionCodeServerDeviceBusy
	ExceptionGatewayPath        = gmodbus.ExceptionCodeGatewayPathUnavailable
	ExceptionGatewayTarget      = gmodbus.ExceptionCodeGatewayTargetDeviceFailedToRespond
)

// ErrUnavailable is returned, wrapped, for requests not sent because the
// endpoint waits before it connects again.
var ErrUnavailable = errors.New("endpoint unavailable: waiting to reconnect")

// malformedError is an answer that broke the protocol.
type malformedError struct{ msg string }

func (e *malformedError) Error() string { return e.msg }

func malformedf(format string, args ...any) error {
	return &malformedError{msg: fmt.Sprintf(format, args...)}
}

// ReadError is a failed read of one request: it names the device, the
// endpoint, the unit, the register table and the address range.
type ReadError struct {
	Device   string
	Endpoint string
	Unit     uint8
	Register RegisterType
	Address  uint16
	Quantity uint16
	// Kind is one of the Kind constants.
	Kind string
	Err  error
}

func (e *ReadError) Error() string {
	dev := e.Device
	if dev == "" {
		dev = "modbus"
	}
	return fmt.Sprintf("%s (%s unit %d): read %s %d (quantity %d): %s: %v",
		dev, e.Endpoint, e.Unit, e.Register, e.Address, e.Quantity, e.Kind, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }

// ExceptionCode returns the Modbus exception code of err, or 0 when err is
// not an exception.
func ExceptionCode(err error) byte {
	if me, ok := asException(err); ok {
		return me.ExceptionCode
	}
	return 0
}

// asException reports whether err is a genuine exception answer: goburrow
// also reports an answer with an unexpected function code as a
// ModbusError, which is a malformed answer, not an exception.
func asException(err error) (*gmodbus.ModbusError, bool) {
	var me *gmodbus.ModbusError
	if errors.As(err, &me) && me.FunctionCode&0x80 != 0 {
		return me, true
	}
	return nil, false
}

// classify returns the kind of a request error.
func classify(err error) string {
	if _, ok := asException(err); ok {
		return KindException
	}
	var me *gmodbus.ModbusError
	var mf *malformedError
	var ne net.Error
	switch {
	case errors.Is(err, ErrUnavailable):
		return KindUnavailable
	case errors.As(err, &me), errors.As(err, &mf):
		return KindMalformed
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return KindConnect
	}
	msg := err.Error()
	if len(msg) > 7 && msg[:7] == "modbus:" {
		// goburrow's own checks: length, transaction, unit id, CRC.
		return KindMalformed
	}
	return KindIO
}
