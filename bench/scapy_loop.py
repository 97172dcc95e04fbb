#!/usr/bin/env python3
"""The scapy baseline: scapy.utils.PcapReader over FILE, touching the TCP fields.

    python3 bench/scapy_loop.py FILE

Every record is dissected by scapy (Ether / IP / TCP layers); for TCP packets
the ports, seq, ack, flags, window and payload length are read. No state is
kept. scapy is ~100x slower than the other tools, so run.py gives it a
100k-packet prefix of the capture (bench/out/bench_100k.pcap).

Prints one JSON line on stdout: packets, tcp, seconds (in-process), checksum.
"""
from __future__ import annotations

import json
import logging
import sys
import time


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: scapy_loop.py FILE", file=sys.stderr)
        return 2
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    from scapy.layers.inet import IP, TCP
    from scapy.utils import PcapReader
    t1 = time.perf_counter()
    n = tcp_n = acc = 0
    with PcapReader(sys.argv[1]) as rd:
        for pkt in rd:
            n += 1
            if TCP in pkt:
                t = pkt[TCP]
                tcp_n += 1
                acc ^= (t.sport ^ t.dport ^ t.seq ^ t.ack ^ int(t.flags) ^ t.window
                        ^ len(t.payload) ^ hash(pkt[IP].src))
    t2 = time.perf_counter()
    print(json.dumps({"packets": n, "tcp": tcp_n, "check": acc,
                      "import_seconds": round(t1 - t0, 4), "seconds": round(t2 - t1, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
