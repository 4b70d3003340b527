package modbus

import (
	"slices"
)

// request is one read of a contiguous range of one table, covering the
// tags listed.
type request struct {
	reg  RegisterType
	addr uint16
	qty  uint16
	tags []int // indexes into the driver's tags
}

// span returns the number of items tag t occupies in its table.
func span(t *Tag) int {
	if t.Register.IsBit() {
		return 1
	}
	return t.Type.Registers()
}

// plan groups tags into as few requests as the protocol allows: tags of one
// table are sorted by address, and a tag joins the current request when the
// gap before it is at most maxGap items and the request stays within the
// table's limit (125 registers, 2,000 bits) and maxRegisters (registers
// only). A tag that needs more than the limit on its own gets a request of
// its own; New rejects those beforehand.
func plan(tags []Tag, maxGap, maxRegisters int) []request {
	idx := make([]int, len(tags))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ta, tb := &tags[a], &tags[b]
		if ta.Register != tb.Register {
			return int(ta.Register) - int(tb.Register)
		}
		return int(ta.Address) - int(tb.Address)
	})
	var out []request
	for _, i := range idx {
		t := &tags[i]
		start, end := int(t.Address), int(t.Address)+span(t)
		limit := t.Register.maxQuantity()
		if !t.Register.IsBit() && maxRegisters > 0 {
			limit = min(limit, maxRegisters)
		}
		if n := len(out); n > 0 {
			r := &out[n-1]
			rEnd := int(r.addr) + int(r.qty)
			if r.reg == t.Register && start-rEnd <= maxGap && max(end, rEnd)-int(r.addr) <= limit {
				r.qty = uint16(max(end, rEnd) - int(r.addr))
				r.tags = append(r.tags, i)
				continue
			}
		}
		out = append(out, request{reg: t.Register, addr: t.Address, qty: uint16(end - start), tags: []int{i}})
	}
	return out
}

// split returns one request per tag of r, for devices that refuse reads
// across unmapped addresses.
func split(r request, tags []Tag) []request {
	out := make([]request, 0, len(r.tags))
	for _, i := range r.tags {
		t := &tags[i]
		out = append(out, request{reg: t.Register, addr: t.Address, qty: uint16(span(t)), tags: []int{i}})
	}
	return out
}
