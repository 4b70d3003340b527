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
var ErrUnavailable = errors.New("not sent: the connection failed and waits to be opened again")

// malformedError is an answer that broke the protocol.
type malformedError struct{ msg string }

func (e *malformedError) Error() string { return e.msg }

func malformedf(format string, args ...any) error {
	return &malformedError{msg: fmt.Sprintf(format, args...)}
}

// ExceptionError is a Modbus exception answer: the device, or a gateway in
// front of it, refused a request. Its text names the code and the function
// and says what to check, as in
//
//	exception 0x0B gateway target device failed to respond (function 0x03 read holding registers): check the unit id, ...
type ExceptionError struct {
	// Function is the function code of the request (0x01 to 0x04).
	Function byte
	// Code is the exception code (0x01 to 0x0B).
	Code byte
}

func (e *ExceptionError) Error() string {
	s := fmt.Sprintf("exception 0x%02X %s (function 0x%02X %s)", e.Code, exceptionName(e.Code), e.Function, functionName(e.Function))
	if h := exceptionHints[e.Code]; h != "" {
		s += ": " + h
	}
	return s
}

// exceptionNames are the names the Modbus specification gives the codes.
var exceptionNames = map[byte]string{
	0x01: "illegal function",
	0x02: "illegal data address",
	0x03: "illegal data value",
	0x04: "server device failure",
	0x05: "acknowledge",
	0x06: "server device busy",
	0x08: "memory parity error",
	0x0A: "gateway path unavailable",
	0x0B: "gateway target device failed to respond",
}

// exceptionHints say what an operator should check.
var exceptionHints = map[byte]string{
	0x01: "the device does not offer this register table: check the tag's register",
	0x02: "the device has no register at this address: check the address and its notation (0-based or 40001-style)",
	0x03: "the device refuses this quantity: lower max_registers",
	0x04: "the device failed while reading: check the device",
	0x06: "the device stayed busy for the whole poll interval",
	0x0A: "the gateway has no path to the unit: check the gateway's configuration for this unit id",
	0x0B: "check the unit id, and the serial line and power of the device behind the gateway",
}

// sampleStatus names the status a failed read gives its samples (the
// record's "status"): the exception's name in the specification's words
// run together (IllegalDataAddress, GatewayTargetDeviceFailedToRespond,
// Exception0x0C for a code it does not name), or what went wrong:
// Timeout, ConnectFailed, NotConnected (waiting before the next
// connection attempt), MalformedAnswer, ConnectionLost.
func sampleStatus(kind string, err error) string {
	if ee, ok := asException(err); ok {
		n, known := exceptionNames[ee.Code]
		if !known {
			return fmt.Sprintf("Exception0x%02X", ee.Code)
		}
		b := make([]byte, 0, len(n))
		up := true
		for i := 0; i < len(n); i++ {
			switch c := n[i]; {
			case c == ' ':
				up = true
			case up && c >= 'a' && c <= 'z':
				b = append(b, c-'a'+'A')
				up = false
			default:
				b = append(b, c)
				up = false
			}
		}
		return string(b)
	}
	switch kind {
	case KindTimeout:
		return "Timeout"
	case KindConnect:
		return "ConnectFailed"
	case KindUnavailable:
		return "NotConnected"
	case KindMalformed:
		return "MalformedAnswer"
	case KindIO:
		return "ConnectionLost"
	}
	return "ReadFailed"
}

func exceptionName(code byte) string {
	if n, ok := exceptionNames[code]; ok {
		return n
	}
	return "unknown exception"
}

// functionName names the read functions the driver sends.
func functionName(fc byte) string {
	switch fc {
	case 0x01:
		return "read coils"
	case 0x02:
		return "read discrete inputs"
	case 0x03:
		return "read holding registers"
	case 0x04:
		return "read input registers"
	}
	return "unknown function"
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
	what := e.Kind + ": " + e.Err.Error()
	if e.Kind == KindException || e.Kind == KindUnavailable {
		what = e.Err.Error() // it says what it is
	}
	return fmt.Sprintf("%s (%s unit %d): read %s %d (quantity %d): %s",
		dev, e.Endpoint, e.Unit, e.Register, e.Address, e.Quantity, what)
}

func (e *ReadError) Unwrap() error { return e.Err }

// ExceptionCode returns the Modbus exception code of err, or 0 when err is
// not an exception.
func ExceptionCode(err error) byte {
	if ee, ok := asException(err); ok {
		return ee.Code
	}
	return 0
}

// asException returns the exception answer err holds, if it is one: an
// *ExceptionError, or goburrow's ModbusError for a genuine exception
// (goburrow also reports an answer with an unexpected function code as a
// ModbusError, which is a malformed answer, not an exception).
func asException(err error) (*ExceptionError, bool) {
	var ee *ExceptionError
	if errors.As(err, &ee) {
		return ee, true
	}
	var me *gmodbus.ModbusError
	if errors.As(err, &me) && me.FunctionCode&0x80 != 0 {
		return &ExceptionError{Function: me.FunctionCode &^ 0x80, Code: me.ExceptionCode}, true
	}
	return nil, false
}

// unitSilent reports whether a failed request says the unit is not
// answering: a timeout, or a gateway answering 0x0A or 0x0B for it. The
// rest of the unit's poll is skipped, and the poll counts towards its
// demotion.
func unitSilent(kind string, err error) bool {
	switch kind {
	case KindTimeout:
		return true
	case KindException:
		c := ExceptionCode(err)
		return c == ExceptionGatewayPath || c == ExceptionGatewayTarget
	}
	return false
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
