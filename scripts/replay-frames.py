#!/usr/bin/env python3
"""Writes the frames of a classic Ethernet pcap onto a network interface
(AF_PACKET), as fast as possible, ROUNDS times: for exporters that only
capture live (fprobe). Usage: replay-frames.py IFACE FILE.pcap [ROUNDS]"""
import socket
import struct
import sys


def main(iface, path, rounds):
    data = open(path, "rb").read()
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    for _ in range(rounds):
        pos = 24
        while pos + 16 <= len(data):
            caplen = struct.unpack_from("<I", data, pos + 8)[0]
            s.send(data[pos + 16:pos + 16 + caplen])
            pos += 16 + caplen


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
