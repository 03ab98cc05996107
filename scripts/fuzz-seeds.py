#!/usr/bin/env python3
"""Builds seed corpora for the fuzz targets (core/fuzz) from the exporter
fixtures: each capture's UDP payloads become one input in the targets'
[exporter byte][u16 length][datagram] format; captures seed the pcap target.

Usage: fuzz-seeds.py CORPUS_DIR
"""
import os
import glob
import itertools
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


def ipfix(template_fields, records, template_id=400):
    """An IPFIX message: one template (fields: (id, pen, length)) and its records."""
    t = struct.pack("!HH", template_id, len(template_fields))
    for ie, pen, length in template_fields:
        t += struct.pack("!HH", ie | (0x8000 if pen else 0), length) + (struct.pack("!I", pen) if pen else b"")
    sets = struct.pack("!HH", 2, 4 + len(t)) + t
    body = b"".join(records)
    sets += struct.pack("!HH", template_id, 4 + len(body)) + body
    return struct.pack("!HHIII", 10, 16 + len(sets), 1795258800, 1, 42) + sets


def netflow_v9(template_fields, record, template_id=402):
    t = struct.pack("!HH", template_id, len(template_fields)) + b"".join(struct.pack("!HH", i, n) for i, n in template_fields)
    flowsets = struct.pack("!HH", 0, 4 + len(t)) + t + struct.pack("!HH", template_id, 4 + len(record)) + record
    return struct.pack("!HHIIII", 9, 2, 60000, 1795258800, 1, 42) + flowsets


def ethernet(etype, payload, src=b"\xa0\0\0\0\0\x01"):
    return b"\xa0\0\0\0\0\x02" + src + struct.pack("!H", etype) + payload


def ipv4(proto, payload, src=b"\xc0\0\x02\x01", dst=b"\xc0\0\x02\x02"):
    return struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0) + src + dst + payload


def udp(dport, payload):
    return struct.pack("!HHHH", 12345, dport, 8 + len(payload), 0) + payload


def mpls(label, bottom):
    return struct.pack("!I", label << 12 | (0x100 if bottom else 0) | 64)


def sflow(samples):
    """An sFlow v5 datagram of flow samples, each a list of (format, record body)."""
    out = struct.pack("!II4sIIII", 5, 1, b"\xc0\0\x02\x63", 0, 1, 0, len(samples))
    for output, records in samples:
        body = struct.pack("!IIIIIIII", 1, 5, 100, 0, 0, 4, output, len(records))
        for fmt, rec in records:
            rec += b"\0" * (-len(rec) % 4)
            body += struct.pack("!II", fmt, len(rec)) + rec
        out += struct.pack("!II", 1, len(body)) + body
    return out


def header(packet):
    return struct.pack("!IIII", 1, len(packet) + 18, 4, len(packet)) + packet


def hand_built():
    """Datagrams for each decoder rule a capture may lack: (target, name, exporter byte, datagram).
    The exporter byte picks the listener options in the harness: (byte >> 2) % 5
    the decapsulation (0 none, 1 vxlan, 2 gre, 3 ipip, 4 srv6), (byte >> 5) % 3
    the time source (0 kernel, 1 export, 2 flow_start): 40 is none + export,
    80 none + flow_start."""
    inner = ethernet(0x0800, ipv4(6, struct.pack("!HHIIHHHH", 40000, 443, 0, 0, 0x5012, 0, 0, 0), b"\x0a\0\0\x01", b"\xc6\x33\x64\x07"))
    frame = ethernet(0x8847, mpls(1000001, True) + ipv4(17, udp(3503, b"\0" * 40)))
    juniper = [(137, 2636, 4), (137, 2636, 2), (10, 0, 4), (315, 0, 0xFFFF)]
    yield "ipfix", "frame-and-exception", 0, ipfix(juniper, [b"\0" * 4 + b"\0\xc2" + struct.pack("!I", 576) + bytes([len(frame)]) + frame])
    fields = [(8, 0, 4), (27, 0, 16), (4, 0, 1), (11, 0, 2), (252, 0, 4), (253, 0, 4), (243, 0, 2), (245, 0, 2)] + [(70 + i, 0, 3) for i in range(4)]
    record = b"\x0a\0\0\x01" + b"\0" * 16 + b"\x01" + struct.pack("!HIIHH", 0x0301, 17, 18, 200, 300)
    record += b"".join(struct.pack("!I", e)[1:] for e in [20005 << 4, 524250 << 4 | 1, 16 << 4 | 1, 0])
    yield "ipfix", "fallbacks-zero-address-mpls-bottom", 40, ipfix(fields, [record])
    yield "netflow_v9", "layer2-packet-section", 80, netflow_v9([(10, 4), (104, len(frame))], struct.pack("!I", 3) + frame)
    v6 = ethernet(0x86dd, struct.pack("!IHBB", 6 << 28, 20, 6, 64) + b"\x20\x01" + b"\0" * 13 + b"\x01" + b"\x20\x01" + b"\0" * 13 + b"\x02" + b"\0" * 20)
    evpn = ethernet(0x8847, mpls(3000, True) + b"\0\0\0\0" + inner)
    switch = (1001, struct.pack("!IIII", 10, 0, 20, 0))
    yield "sflow", "l3-bytes-switch-evpn-discard", 0, sflow([(9, [switch, (1, header(v6))]), (9, [(1, header(evpn))]), (1 << 30 | 1, [(1, header(inner))])])
    ipip = ethernet(0x0800, ipv4(4, inner[14:]))
    gre = ethernet(0x0800, ipv4(47, struct.pack("!HHI", 0x2000, 0x0800, 42) + inner[14:]))
    vxlan = ethernet(0x0800, ipv4(17, udp(4789, b"\x08\0\0\0\0\0\x64\0" + inner)))
    # IPv6 with a one-segment routing header (43, type 4), then IPv4.
    segment = b"\x20\x01" + b"\0" * 13 + b"\x02"
    srh = struct.pack("!BBBBI", 4, 2, 4, 0, 0) + segment
    srv6 = ethernet(0x86dd, struct.pack("!IHBB", 6 << 28, len(srh) + len(inner) - 14, 43, 64) + b"\x20\x01" + b"\0" * 13 + b"\x01" + segment + srh + inner[14:])
    for byte, name, packet in [(4, "vxlan", vxlan), (8, "gre", gre), (12, "ipip", ipip), (16, "srv6", srv6)]:
        yield "sflow", "decapsulation-" + name, byte, sflow([(9, [(1, header(packet))]), (9, [(1, header(inner))])])
        yield "ipfix", "decapsulation-" + name, byte, ipfix([(10, 0, 4), (315, 0, 0xFFFF)], [struct.pack("!IB", 9, len(packet)) + packet])


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
    for target, name, exporter, d in hand_built():
        seed = bytes([exporter]) + struct.pack("!H", len(d)) + d
        for t in (target, "any_format"):
            open(os.path.join(out, t, name + ".seed"), "wb").write(seed)
    # Kafka records of the inlet (weir_core::rawflow): each fixture's
    # datagrams as RawFlow messages, each cut by a 2-byte length.
    os.makedirs(os.path.join(out, "raw_flows"), exist_ok=True)

    def varint(n):
        b = b""
        while True:
            if n < 0x80:
                return b + bytes([n])
            b += bytes([n & 0x7F | 0x80])
            n >>= 7

    def raw_flow(payload, exporter, i):
        fields = varint(1 << 3) + varint(1_700_000_000_000_000_000 + i)
        fields += varint(2 << 3 | 2) + varint(len(payload)) + payload
        fields += varint(3 << 3 | 2) + varint(16) + b"\0" * 10 + b"\xff\xff" + exporter
        fields += varint(4 << 3) + varint(i % 5) + varint(6 << 3) + varint(1)
        return struct.pack("!H", len(fields)) + fields

    for path in sorted(glob.glob(os.path.join(fixtures, "*.pcap")))[:6]:
        records = b"".join(raw_flow(p, b"\xc0\0\x02\x07", i) for i, p in enumerate(itertools.islice(udp_payloads(path), 40)))
        open(os.path.join(out, "raw_flows", os.path.basename(path) + ".seed"), "wb").write(records)
    open(os.path.join(out, "state_snapshot", "empty.json"), "wb").write(
        b'{"format_version":1,"templates":[],"samplers":[],"system_init":[]}')
    os.makedirs(os.path.join(out, "state_record"), exist_ok=True)
    for name, record in [
        ("template.json", b'{"origin":1,"update":{"Template":{"protocol":"Ipfix","exporter":"192.0.2.1","domain":0,'
         b'"template_id":256,"options":false,"scope_fields":0,"fields":[{"id":8,"pen":0,"len":4},'
         b'{"id":12,"pen":0,"len":4},{"id":1,"pen":0,"len":8}]}}}'),
        ("sampler.json", b'{"origin":2,"update":{"Sampler":{"protocol":"NetflowV9","exporter":"2001:db8::1",'
         b'"domain":7,"sampler_id":3,"sampling_rate":1000}}}'),
    ]:
        open(os.path.join(out, "state_record", name), "wb").write(record)
    os.makedirs(os.path.join(out, "access_log"), exist_ok=True)
    lines = [
        b'<134>1 2026-11-21T12:00:00.123456+01:00 cache1 haproxy 4242 - [weir@1 ci="192.0.2.7" ST="200" '
        b't="21/Nov/2026:11:00:00.120" Ts="1795258800.5" hr="{example.com|Mozilla/5.0 (X11)}"] '
        b'www "GET /a?b=c HTTP/1.1" {text/html|#7C}',
        b'<13>1 - - - - - [a x="\\\"\\]"][weir@1 ST="-1"] - "<BADREQ>"\n',
        # Invalid UTF-8 as HAProxy sends it: a Latin-1 capture and a
        # character cut by a capture's len in SD values, raw bytes in %hr,
        # a #XX-escaped path that decodes to bytes that are not UTF-8.
        b'<134>1 - cache\xff haproxy 7 - [weir@1 ci="192.0.2.7" ST="200" ua="caf\xe9 l\\"a\\]t" '
        b'HP="/#C3#A9t/#22x#22?q=#E9" hr="{ab\xc3\xa9cdef\xc3|#E9}"] '
        b'www "GET /x\xe9 HTTP/1.1" {\xe2\x82|ok}',
    ]
    for i, line in enumerate(lines):
        open(os.path.join(out, "access_log", "line%d" % i), "wb").write(line)

    # Native blocks as the shards write them (and the spool keeps them).
    os.makedirs(os.path.join(out, "native_blocks"), exist_ok=True)

    def column(name, kind, data):
        return bytes([len(name)]) + name + bytes([len(kind)]) + kind + data

    rows = 2
    block = bytes([4, rows])
    block += column(b"TimeReceived", b"DateTime", struct.pack("<II", 1795258800, 1795258801))
    block += column(b"ExporterAddress", b"IPv6", (b"\0" * 10 + b"\xff\xff\xc0\x00\x02\x01") * rows)
    block += column(b"FlowStart", b"DateTime64(3)", struct.pack("<qq", 1795258800000, 1795258800500))
    block += column(b"MPLSLabels", b"Array(UInt32)", struct.pack("<QQ", 1, 3) + struct.pack("<III", 16, 17, 18))
    open(os.path.join(out, "native_blocks", "two_blocks"), "wb").write(block + block)
    # Enrichment's columns: a LowCardinality(String) dictionary with its
    # indexes, an Enum8 boundary, and the plain String 18.16 gets.
    meta = bytes([3, rows])
    keys = bytes([0]) + bytes([9]) + b"edge1-par"
    meta += column(b"ExporterName", b"LowCardinality(String)",
                   struct.pack("<QQQ", 1, (1 << 9) | (1 << 10), 2) + keys + struct.pack("<Q", rows) + bytes([1, 0]))
    enum = b"Enum8('undefined' = 0, 'external' = 1, 'internal' = 2)"
    meta += bytes([len(b"InIfBoundary")]) + b"InIfBoundary" + bytes([len(enum)]) + enum + bytes([1, 2])
    meta += column(b"InIfName", b"String", bytes([5]) + b"et-17" + bytes([0]))
    open(os.path.join(out, "native_blocks", "metadata_columns"), "wb").write(meta + block)

    # Compressed segment files: zstd frames (here of raw blocks, as a
    # compressor writes data it cannot shrink), one cut in its last block.
    os.makedirs(os.path.join(out, "zstd_frames"), exist_ok=True)

    def zstd_frame(data):
        # Single segment, a 4-byte content size, one last raw block.
        frame = struct.pack("<I", 0xFD2FB528) + bytes([0x80 | 0x20]) + struct.pack("<I", len(data))
        return frame + struct.pack("<I", 1 | (len(data) << 3))[:3] + data

    frames = zstd_frame(block) + zstd_frame(meta)
    open(os.path.join(out, "zstd_frames", "two_frames"), "wb").write(frames)
    open(os.path.join(out, "zstd_frames", "cut"), "wb").write(frames[:-7])

    # SNMP answers (SNMPv2c responses to a poll of interfaces 1 and 2, as
    # net-snmp sends them) and a metadata cache file.
    def tlv(tag, body):
        n = len(body)
        size = bytes([n]) if n < 128 else bytes([0x81, n]) if n < 256 else bytes([0x82]) + struct.pack("!H", n)
        return bytes([tag]) + size + body

    def oid(arcs):
        out = bytes([40 * arcs[0] + arcs[1]])
        for a in arcs[2:]:
            enc = [a & 0x7f]
            a >>= 7
            while a:
                enc.insert(0, 0x80 | (a & 0x7f))
                a >>= 7
            out += bytes(enc)
        return tlv(0x06, out)

    def response(varbinds, status=0):
        binds = b"".join(tlv(0x30, oid(o) + v) for o, v in varbinds)
        pdu = tlv(0x02, b"\x30\x39") + tlv(0x02, bytes([status])) + tlv(0x02, b"\x00") + tlv(0x30, binds)
        return tlv(0x30, tlv(0x02, b"\x01") + tlv(0x04, b"public") + tlv(0xa2, pdu))

    text = lambda s: tlv(0x04, s)
    gauge = lambda n: tlv(0x42, struct.pack("!I", n).lstrip(b"\0") or b"\0")
    binds = [([1, 3, 6, 1, 2, 1, 1, 5, 0], text(b"edge1-par"))]
    for i, (descr, name, alias, speed) in enumerate([(b"xe-0/0/1", b"xe-0/0/1", b"Transit: Cogent", 10000),
                                                     (b"eth2", None, b"", None)], start=1):
        binds += [([1, 3, 6, 1, 2, 1, 2, 2, 1, 2, i], text(descr)),
                  ([1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1, i], text(name) if name else b"\x81\x00"),
                  ([1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18, i], text(alias)),
                  ([1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15, i], gauge(speed) if speed else b"\x80\x00")]
    os.makedirs(os.path.join(out, "snmp_response"), exist_ok=True)
    open(os.path.join(out, "snmp_response", "two_interfaces"), "wb").write(response(binds))
    open(os.path.join(out, "snmp_response", "sysname_only"), "wb").write(response(binds[:1]))
    open(os.path.join(out, "snmp_response", "too_big"), "wb").write(response([], status=1))
    os.makedirs(os.path.join(out, "metadata_cache"), exist_ok=True)
    open(os.path.join(out, "metadata_cache", "one_exporter.json"), "wb").write(
        b'{"version":1,"exporters":[{"address":"192.0.2.1","name":"edge1-par","updated_s":1795258800,'
        b'"interfaces":[{"if_index":17,"name":"xe-0/0/17","description":"Transit: Cogent","speed":10000,'
        b'"updated_s":1795258800}]}]}')

    # Classifier rules: Akvorado's documented examples and the language's
    # other shapes.
    os.makedirs(os.path.join(out, "classifier_rule"), exist_ok=True)
    rules = [
        'ClassifySiteRegex(Exporter.Name, "^([^-]+)-", "$1")',
        'Exporter.Name endsWith ".it" && ClassifyRegion("italy")',
        'ClassifyConnectivityRegex(Interface.Description, "^(?i)(transit|pni|ppni|ix):? ", "$1") && '
        'ClassifyProviderRegex(Interface.Description, "^\\\\S+?\\\\s(\\\\S+)", "$1") && ClassifyExternal()',
        'let n = lower(Exporter.Name); n startsWith "th2" ? ClassifySite("th2") : Reject()',
        'Interface.Speed >= 100000 && SetName(Format("%s (%d G)", Interface.Name, Interface.Speed / 1000))',
        'Exporter.IP in ["192.0.2.1", \'192.0.2.2\'] && {a: [1, 2]}.a[0] == 1 && ClassifyTenant(`raw\\`)',
    ]
    for i, rule in enumerate(rules):
        open(os.path.join(out, "classifier_rule", "rule%d" % i), "w").write(rule)

    # Remote source documents: NetBox-like JSON (first byte 2: path
    # "results") and CSV rows per interface (first byte 1).
    os.makedirs(os.path.join(out, "remote_source"), exist_ok=True)
    open(os.path.join(out, "remote_source", "netbox.json"), "wb").write(
        b'\x02{"results": [{"primary_ip4": {"address": "192.0.2.1/32"}, "name": "edge1", "site": "par", '
        b'"interfaces": [{"if_index": 17, "name": "et-17", "speed": 100000, "boundary": "external"}]}]}')
    open(os.path.join(out, "remote_source", "rows.csv"), "wb").write(
        b'\x01subnet,name,if_index,if_name,if_speed,if_boundary\n192.0.2.1,edge1,17,et-17,100000,external\n'
        b'192.0.2.1,,18,"et-18, ""core""",,\n')

    # Console filters (console/fuzz): one per column kind and operator, and
    # the hostile shapes the filter test sends.
    filters = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "console", "fuzz", "corpus", "filter")
    os.makedirs(filters, exist_ok=True)
    seeds = [
        "SrcAS = AS65000 AND (DstPort IN (80, 443) OR Proto = 'UDP') -- web",
        "NOT SrcAddr << 192.0.2.0/24 /* c */ OR DstAddr !<< 2001:db8::/32",
        "SrcAddr IN (192.0.2.1, 198.51.100.0/24) AND SrcMAC = 00:11:22:33:44:55",
        "DstCommunities = 65000:100 AND DstASPath != AS1299 AND MPLSLabels = 16",
        "ExporterName ILIKE 'edge%' AND InIfName = OutIfName AND InIfBoundary = external",
        "ExporterName = 'it\\'s \\\\ \"q\"' OR ExporterName NOTIN (\"a\", 'b')",
        "EType = IPv6 AND FlowDirection = egress AND SrcPort != DstPort AND PacketSize >= 1400",
        "((((SrcPort = 1))))",
        # HAProxy's requests (the http source): signed ints, `_` in names.
        "status_class = 5 AND backend ILIKE 'app%' AND ta_ms > -1 AND client_ip << 10.0.0.0/8",
        "request_uri NOTIN ('/a', '/b') OR tr_ms IN (-1, 0) OR ta_ms >= tr_ms",
    ]
    for i, seed in enumerate(seeds):
        open(os.path.join(filters, "seed%d" % i), "wb").write(seed.encode())
    graphs = os.path.join(os.path.dirname(filters), "graph_request")
    os.makedirs(graphs, exist_ok=True)
    requests = [
        '{"start": "2027-01-15T08:00:00Z", "end": "2027-01-15T09:00:00Z", "units": "l3bps", "points": 200}',
        '{"start": "2027-01-14T09:00:00Z", "end": "2027-01-15T09:00:00Z", "units": "pps", "points": 100, '
        '"dimensions": ["SrcAddr", "Proto"], "limit": 5, "limitType": "max", "filter": "SrcAS = AS1 OR DstPort = 443", '
        '"truncate-v4": 24, "truncate-v6": 48, "bidirectional": true, "previous-period": true}',
        '{"start": "2027-01-08T09:00:00Z", "end": "2027-01-15T09:00:00Z", "units": "fps", "points": 2000, '
        '"dimensions": ["InIfIndex", "OutIfIndex", "ExporterAddress"], "limitType": "last"}',
        '{"source": "http", "start": "2027-01-14T09:00:00Z", "end": "2027-01-15T09:00:00Z", "units": "latency-p99", '
        '"points": 100, "dimensions": ["backend", "status_class"], "filter": "status >= 500 AND request_uri LIKE \'/api%\'", '
        '"previous-period": true}',
        '{"source": "http", "start": "2027-01-08T09:00:00Z", "end": "2027-01-15T09:00:00Z", "units": "rps", '
        '"points": 2000, "dimensions": ["server"], "limitType": "max"}',
    ]
    answer = b"\x000\t10.5\t192.0.2.0\t6\n1\t3\tOther\tOther\n"
    for i, r in enumerate(requests):
        open(os.path.join(graphs, "seed%d" % i), "wb").write(r.encode() + answer)


if __name__ == "__main__":
    main(sys.argv[1])
