package modbus

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

var baudRates = map[int]uint32{
	1200: unix.B1200, 2400: unix.B2400, 4800: unix.B4800, 9600: unix.B9600,
	19200: unix.B19200, 38400: unix.B38400, 57600: unix.B57600, 115200: unix.B115200,
	230400: unix.B230400, 460800: unix.B460800, 921600: unix.B921600,
}

// serialPort is an open serial device in raw mode. Reads and writes go
// through the runtime poller, so deadlines work (also on a pty).
type serialPort struct {
	*os.File
}

// openSerial opens the device of s in raw mode with its line settings.
func openSerial(s Serial, path string) (*serialPort, error) {
	speed, ok := baudRates[s.BaudRate]
	if !ok {
		return nil, fmt.Errorf("serial %s: unsupported baud rate %d", path, s.BaudRate)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			cerr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB | unix.PARODD | unix.CSTOPB | unix.CBAUD | unix.CRTSCTS
		t.Cflag |= unix.CREAD | unix.CLOCAL | speed
		switch s.DataBits {
		case 7:
			t.Cflag |= unix.CS7
		default:
			t.Cflag |= unix.CS8
		}
		switch s.Parity {
		case "E":
			t.Cflag |= unix.PARENB
		case "O":
			t.Cflag |= unix.PARENB | unix.PARODD
		}
		if s.StopBits == 2 {
			t.Cflag |= unix.CSTOPB
		}
		t.Ispeed, t.Ospeed = speed, speed
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		if err := unix.IoctlSetTermios(int(fd), unix.TCSETS, t); err != nil {
			cerr = err
			return
		}
		cerr = unix.IoctlSetInt(int(fd), unix.TCFLSH, unix.TCIOFLUSH)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("serial %s: set line %d %d%s%d: %w", path, s.BaudRate, s.DataBits, s.Parity, s.StopBits, err)
	}
	return &serialPort{File: f}, nil
}

// flushInput discards bytes received and not read.
func (p *serialPort) flushInput() error {
	rc, err := p.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = unix.IoctlSetInt(int(fd), unix.TCFLSH, unix.TCIFLUSH) }); err != nil {
		return err
	}
	return ferr
}
