#!/usr/bin/python3
"""Serve known register contents with pymodbus, a Modbus implementation this
project did not write, for the e2e tests.

Usage: pymodbus_server.py SPEC.json [--tcp HOST:PORT] [--rtu DEVICE --baud N]

SPEC.json lists points: {"unit": 1, "register": "holding", "address": 0,
"type": "float32", "order": "CDAB", "value": 1.5}. The register contents
are computed here with Python's struct module, independently of the Go
encoder, and served over Modbus TCP and/or RTU on a serial device (one end
of a socat pty pair). Prints "ready" on stdout once listening.
"""
import argparse
import asyncio
import json
import struct
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.transaction import ModbusRtuFramer

FORMATS = {
    "int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I",
    "int64": ">q", "uint64": ">Q", "float32": ">f", "float64": ">d",
}


def registers(typ, order, value):
    """Return the 16-bit registers of value as they go on the wire."""
    if typ.startswith("string("):
        n = int(typ[len("string("):-1])
        raw = value.encode("utf-8")[:n].ljust(n + (n % 2), b"\0")
    elif typ == "bool":
        raw = struct.pack(">H", 1 if value else 0)
    else:
        raw = struct.pack(FORMATS[typ], value)
    words = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if not typ.startswith("string(") and order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def build_context(points):
    size = 2000
    units = {}
    for p in points:
        u = units.setdefault(p["unit"], {
            "co": [False] * size, "di": [False] * size,
            "hr": [0] * size, "ir": [0] * size,
        })
        reg, addr = p["register"], p["address"]
        if reg in ("coil", "discrete"):
            u["co" if reg == "coil" else "di"][addr] = bool(p["value"])
            continue
        regs = registers(p["type"], p.get("order", "ABCD"), p["value"])
        table = u["hr" if reg == "holding" else "ir"]
        table[addr:addr + len(regs)] = regs
    slaves = {
        unit: ModbusSlaveContext(
            co=ModbusSequentialDataBlock(0, t["co"]),
            di=ModbusSequentialDataBlock(0, t["di"]),
            hr=ModbusSequentialDataBlock(0, t["hr"]),
            ir=ModbusSequentialDataBlock(0, t["ir"]),
            zero_mode=True,
        )
        for unit, t in units.items()
    }
    return ModbusServerContext(slaves=slaves, single=False)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("spec")
    ap.add_argument("--tcp")
    ap.add_argument("--rtu")
    ap.add_argument("--baud", type=int, default=19200)
    args = ap.parse_args()
    with open(args.spec, encoding="utf-8") as f:
        context = build_context(json.load(f))
    servers = []
    if args.tcp:
        host, port = args.tcp.rsplit(":", 1)
        servers.append(await StartAsyncTcpServer(
            context=context, address=(host, int(port)), defer_start=True))
    if args.rtu:
        servers.append(await StartAsyncSerialServer(
            context=context, framer=ModbusRtuFramer, port=args.rtu,
            baudrate=args.baud, bytesize=8, parity="N", stopbits=1,
            defer_start=True))
    tasks = []
    for s in servers:
        if args.rtu and s is servers[-1]:
            await s.start()  # opens the serial device
        tasks.append(asyncio.create_task(s.serve_forever()))
        if hasattr(s, "serving") and not (args.rtu and s is servers[-1]):
            await s.serving  # the TCP socket is bound
    print("ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
