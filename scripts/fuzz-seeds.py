#!/usr/bin/env python3
"""Builds seed corpora for the fuzz targets (core/fuzz) from the exporter
fixtures: each capture's UDP payloads become one input in the targets'
[exporter byte][u16 length][datagram] format; captures seed the pcap target.

Usage: fuzz-seeds.py CORPUS_DIR
"""
import glob
import os
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "..", "shards", "tests", "fixtures", "exporters")


def udp_payloads(path):
    data = open(path, "rb").read()
    pos = 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        frame = data[pos + 16:pos + 16 + caplen]
        pos += 16 + caplen
        ihl = (frame[14] & 0x0F) * 4
        yield frame[14 + ihl + 8:]


def main(out):
    targets = {"netflow_v5": "v5", "netflow_v9": "v9", "ipfix": "ipfix", "sflow": "sflow", "any_format": ""}
    for target in list(targets) + ["pcap", "state_snapshot"]:
        os.makedirs(os.path.join(out, target), exist_ok=True)
    for path in sorted(glob.glob(os.path.join(fixtures, "*.pcap"))):
        name = os.path.basename(path)
        seed = b"".join(bytes([0]) + struct.pack("!H", len(p)) + p for p in udp_payloads(path))
        for target, tag in targets.items():
            if tag in name:
                open(os.path.join(out, target, name + ".seed"), "wb").write(seed)
        open(os.path.join(out, "pcap", name), "wb").write(open(path, "rb").read())
    open(os.path.join(out, "state_snapshot", "empty.json"), "wb").write(
        b'{"format_version":1,"templates":[],"samplers":[],"system_init":[]}')
    os.makedirs(os.path.join(out, "access_log"), exist_ok=True)
    lines = [
        b'<134>1 2026-11-21T12:00:00.123456+01:00 cache1 haproxy 4242 - [weir@1 ci="192.0.2.7" ST="200" '
        b't="21/Nov/2026:11:00:00.120" Ts="1795258800.5" hr="{example.com|Mozilla/5.0 (X11)}"] '
        b'www "GET /a?b=c HTTP/1.1" {text/html|#7C}',
        b'<13>1 - - - - - [a x="\\\"\\]"][weir@1 ST="-1"] - "<BADREQ>"\n',
    ]
    for i, line in enumerate(lines):
        open(os.path.join(out, "access_log", "line%d" % i), "wb").write(line)


if __name__ == "__main__":
    main(sys.argv[1])
