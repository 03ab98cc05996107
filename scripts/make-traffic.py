#!/usr/bin/env python3
"""Writes a small, deterministic synthetic traffic capture (classic pcap,
Ethernet): IPv4 and IPv6 flows over TCP, UDP, ICMP and ICMPv6, for feeding
real exporters (softflowd, pmacctd) in scripts/make-fixtures.

Usage: make-traffic.py OUT.pcap
"""
import random
import struct
import sys

START = 1_767_225_600  # 2026-01-01T00:00:00Z


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data)//2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, ident, ttl=64, tos=0):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), ident, 0x4000, ttl, proto, 0,
                      bytes(src), bytes(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return 0x0800, hdr + payload


def ipv6(src, dst, proto, payload, hlim=64, label=0):
    hdr = struct.pack("!IHBB16s16s", (6 << 28) | label, len(payload), proto, hlim, bytes(src), bytes(dst))
    return 0x86DD, hdr + payload


def l4(proto, sport, dport, flags, size):
    body = bytes(size)
    if proto == 6:
        return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0) + body
    if proto == 17:
        return struct.pack("!HHHH", sport, dport, 8 + size, 0) + body
    # ICMP / ICMPv6: echo request, type in sport
    return struct.pack("!BBHHH", sport, 0, 0, 1, 1) + body


def v6addr(n):
    return bytes([0x20, 0x01, 0x0D, 0xB8] + [0] * 10 + [n >> 8, n & 0xFF])


def main(out):
    rnd = random.Random(42)
    flows = []
    for i in range(24):
        proto = [6, 6, 17, 1][i % 4]
        src = [10, 1, i // 8, 10 + i]
        dst = [192, 0, 2, 1 + i % 5]
        sport = 8 if proto == 1 else 40000 + i
        dport = 0 if proto == 1 else [443, 80, 53, 0][i % 4]
        flows.append(("v4", src, dst, proto, sport, dport, rnd.randint(3, 12), rnd.randint(40, 1200)))
    for i in range(12):
        proto = [6, 17, 58][i % 3]
        sport = 128 if proto == 58 else 50000 + i
        dport = 0 if proto == 58 else [443, 123][i % 2]
        flows.append(("v6", v6addr(0x100 + i), v6addr(0x200 + i % 3), proto, sport, dport,
                      rnd.randint(3, 12), rnd.randint(40, 1200)))
    packets = []
    for n, (fam, src, dst, proto, sport, dport, count, size) in enumerate(flows):
        t0 = START + n * 0.25
        for k in range(count):
            flags = 0x02 if k == 0 else (0x11 if k == count - 1 else 0x18)
            payload = l4(proto, sport, dport, flags, size)
            if fam == "v4":
                etype, pkt = ipv4(src, dst, proto, payload, ident=(n * 100 + k) & 0xFFFF, tos=[0, 0x10, 0xB8][n % 3])
            else:
                etype, pkt = ipv6(src, dst, proto, payload, label=n)
            frame = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]) + struct.pack("!H", etype) + pkt
            packets.append((t0 + k * 0.4, frame))
            if proto != 6 or k % 2:
                continue
            # TCP answers every other packet, so flows have a reverse direction (biflows).
            reply = l4(proto, dport, sport, 0x10 if k else 0x12, size // 4)
            if fam == "v4":
                etype, pkt = ipv4(dst, src, proto, reply, ident=(n * 100 + k + 50) & 0xFFFF)
            else:
                etype, pkt = ipv6(dst, src, proto, reply, label=n)
            frame = bytes([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]) + struct.pack("!H", etype) + pkt
            packets.append((t0 + k * 0.4 + 0.05, frame))
    packets.sort(key=lambda p: p[0])
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in packets:
            sec, usec = int(ts), int(round((ts - int(ts)) * 1e6))
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
            f.write(frame)


if __name__ == "__main__":
    main(sys.argv[1])
