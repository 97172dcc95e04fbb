#!/usr/bin/env python3
"""The "dpkt parse loop" baseline: how fast pure-Python per-packet decoding goes.

    python3 bench/dpkt_loop.py FILE                  # plain dpkt loop (default)
    python3 bench/dpkt_loop.py FILE --tcpfsm-decoder # tcpfsm's own dpkt reference decoder

Plain loop: dpkt.pcap.Reader over the file, dpkt.ethernet.Ethernet on every
record, and for IPv4/TCP the fields a TCP tracker needs (ports, seq, ack,
flags, window, payload length) are read. No state is kept: this is the floor
for any tracker written on top of dpkt.

--tcpfsm-decoder: iterate tcpfsm.capture.dpkt_decoder.open_capture_dpkt(FILE)
.batches() instead - tcpfsm's dpkt-based reference decoder, which produces the
same Batch rows as the numpy reader (read+decode stage only, no tracking).

Prints one JSON line on stdout: packets, tcp, seconds (in-process), checksum.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def plain(path: str) -> dict:
    import dpkt
    Ethernet, IP, TCP = dpkt.ethernet.Ethernet, dpkt.ip.IP, dpkt.tcp.TCP
    n = tcp_n = 0
    acc = 0
    with open(path, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            n += 1
            try:
                eth = Ethernet(buf)
            except (dpkt.UnpackError, dpkt.NeedData):
                continue
            ip = eth.data
            if type(ip) is IP:
                tcp = ip.data
                if type(tcp) is TCP:
                    tcp_n += 1
                    acc ^= (tcp.sport ^ tcp.dport ^ tcp.seq ^ tcp.ack ^ tcp.flags ^ tcp.win
                            ^ len(tcp.data) ^ ip.src[3] ^ ip.dst[3])
    return {"packets": n, "tcp": tcp_n, "check": acc}


def tcpfsm_decoder(path: str) -> dict:
    from tcpfsm.capture.dpkt_decoder import open_capture_dpkt
    cap = open_capture_dpkt(path)
    rows = 0
    for b in cap.batches(65536):
        rows += len(b)
    cap.close()
    return {"packets": cap.info.records, "tcp": rows, "check": None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--tcpfsm-decoder", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    r = tcpfsm_decoder(args.capture) if args.tcpfsm_decoder else plain(args.capture)
    r["seconds"] = round(time.perf_counter() - t0, 4)
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
