//go:build !linux

package modbus

import (
	"errors"
	"os"
)

type serialPort struct{ *os.File }

func openSerial(s Serial, path string) (*serialPort, error) {
	return nil, errors.New("modbus RTU on a serial port is supported on Linux only")
}

func (p *serialPort) flushInput() error { return nil }
