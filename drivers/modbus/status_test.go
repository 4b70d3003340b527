package modbus

import (
	"errors"
	"fmt"
	"testing"

	gmodbus "github.com/goburrow/modbus"
)

func TestSampleStatus(t *testing.T) {
	for _, c := range []struct {
		kind string
		err  error
		want string
	}{
		{KindException, &ExceptionError{Function: 3, Code: 0x02}, "IllegalDataAddress"},
		{KindException, fmt.Errorf("read: %w", &ExceptionError{Function: 3, Code: 0x0B}), "GatewayTargetDeviceFailedToRespond"},
		{KindException, &gmodbus.ModbusError{FunctionCode: 0x83, ExceptionCode: 0x06}, "ServerDeviceBusy"},
		{KindException, &ExceptionError{Function: 3, Code: 0x0C}, "Exception0x0C"},
		{KindTimeout, errors.New("i/o timeout"), "Timeout"},
		{KindConnect, errors.New("refused"), "ConnectFailed"},
		{KindUnavailable, ErrUnavailable, "NotConnected"},
		{KindMalformed, malformedf("short"), "MalformedAnswer"},
		{KindIO, errors.New("reset"), "ConnectionLost"},
		{"other", errors.New("?"), "ReadFailed"},
	} {
		t.Run(c.want, func(t *testing.T) {
			if got := sampleStatus(c.kind, c.err); got != c.want {
				t.Errorf("sampleStatus(%s, %v) = %q, want %q", c.kind, c.err, got, c.want)
			}
		})
	}
}
