package modbus

import (
	"encoding/binary"
	"fmt"

	sv "github.com/simonvetter/modbus"
)

// RequestHandler returns the bank as a github.com/simonvetter/modbus
// request handler, so that its TCP server can serve the bank: an
// independent implementation of Modbus TCP framing. Writes are refused
// with exception 1 (illegal function), unknown units with 0x0B.
func (b *Bank) RequestHandler() sv.RequestHandler { return svHandler{b} }

type svHandler struct{ b *Bank }

func (h svHandler) bits(unit uint8, fc byte, addr, qty uint16, write bool) ([]bool, error) {
	if write {
		return nil, sv.ErrIllegalFunction
	}
	pdu, err := h.call(unit, fc, addr, qty)
	if err != nil {
		return nil, err
	}
	out := make([]bool, qty)
	for i := range out {
		out[i] = pdu[2+i/8]&(1<<(i%8)) != 0
	}
	return out, nil
}

func (h svHandler) regs(unit uint8, fc byte, addr, qty uint16, write bool) ([]uint16, error) {
	if write {
		return nil, sv.ErrIllegalFunction
	}
	pdu, err := h.call(unit, fc, addr, qty)
	if err != nil {
		return nil, err
	}
	out := make([]uint16, qty)
	for i := range out {
		out[i] = binary.BigEndian.Uint16(pdu[2+2*i:])
	}
	return out, nil
}

func (h svHandler) call(unit uint8, fc byte, addr, qty uint16) ([]byte, error) {
	req := []byte{fc, byte(addr >> 8), byte(addr), byte(qty >> 8), byte(qty)}
	pdu, ok := h.b.read(unit, req, nil)
	if !ok {
		return nil, sv.ErrGWTargetFailedToRespond
	}
	if pdu[0]&0x80 != 0 {
		switch pdu[1] {
		case excIllegalAddress:
			return nil, sv.ErrIllegalDataAddress
		case excIllegalValue:
			return nil, sv.ErrIllegalDataValue
		}
		return nil, sv.ErrIllegalFunction
	}
	return pdu, nil
}

func (h svHandler) HandleCoils(r *sv.CoilsRequest) ([]bool, error) {
	return h.bits(r.UnitId, 1, r.Addr, r.Quantity, r.IsWrite)
}

func (h svHandler) HandleDiscreteInputs(r *sv.DiscreteInputsRequest) ([]bool, error) {
	return h.bits(r.UnitId, 2, r.Addr, r.Quantity, false)
}

func (h svHandler) HandleHoldingRegisters(r *sv.HoldingRegistersRequest) ([]uint16, error) {
	return h.regs(r.UnitId, 3, r.Addr, r.Quantity, r.IsWrite)
}

func (h svHandler) HandleInputRegisters(r *sv.InputRegistersRequest) ([]uint16, error) {
	return h.regs(r.UnitId, 4, r.Addr, r.Quantity, false)
}

// NewSimonvetterServer starts github.com/simonvetter/modbus's TCP server on
// addr (host:port; that server cannot report a port it picked) serving
// bank. Stop it with Stop.
func NewSimonvetterServer(addr string, bank *Bank) (*sv.ModbusServer, error) {
	srv, err := sv.NewServer(&sv.ServerConfiguration{URL: "tcp://" + addr, MaxClients: 64}, bank.RequestHandler())
	if err != nil {
		return nil, fmt.Errorf("modbus server on %s: %w", addr, err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("modbus server on %s: %w", addr, err)
	}
	return srv, nil
}
