#!/usr/bin/env python3
"""Writes the test ASN database (MaxMind format, as GeoLite2-ASN lays it
out) with PyPI's mmdb-writer, for shards/tests/networks.rs and the
networks benchmark.

Usage: scripts/make-test-mmdb.py OUT.mmdb [PREFIX=ASN ...]
       scripts/make-test-mmdb.py --ipinfo OUT.mmdb
Without pairs, the prefixes the test expects are written. --ipinfo writes
IPinfo's layout instead (strings: country, region, city, asn "AS64510"). scripts/setup-geoip
installs mmdb-writer under /usr/local/lib/weir-python (on PYTHONPATH here).
"""
import sys

sys.path.insert(0, "/usr/local/lib/weir-python")
from mmdb_writer import MMDBWriter, MmdbU32  # noqa: E402
from netaddr import IPSet  # noqa: E402

DEFAULT = {
    "81.2.69.0/24": 64500,
    "89.160.20.0/24": 64501,
    "2a02:ec0::/32": 64502,
    "203.0.113.0/24": 64503,
}


def ipinfo(out):
    writer = MMDBWriter(
        ip_version=6,
        database_type="ipinfo standard_location.mmdb",
        languages=["en"],
        description="Weir test IPinfo database",
        ipv4_compatible=True,
    )
    writer.insert_network(
        IPSet(["198.51.100.0/24"]),
        {"country": "JP", "region": "Tokyo", "city": "Chiyoda", "asn": "AS64510"},
    )
    writer.to_db_file(out)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "--ipinfo":
        return ipinfo(sys.argv[2])
    pairs = dict(a.split("=", 1) for a in sys.argv[2:]) or DEFAULT
    writer = MMDBWriter(
        ip_version=6,
        database_type="GeoLite2-ASN",
        languages=["en"],
        description="Weir test ASN database",
        ipv4_compatible=True,
    )
    for prefix, asn in pairs.items():
        writer.insert_network(
            IPSet([prefix]),
            {"autonomous_system_number": MmdbU32(int(asn)), "autonomous_system_organization": f"Test AS{asn}"},
        )
    writer.to_db_file(sys.argv[1])


if __name__ == "__main__":
    main()
