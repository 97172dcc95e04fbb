#!/usr/bin/env python3
"""Decode alone: seconds and records/s for reading a capture into batches (best of --runs).

    .venv/bin/python bench/decode_speed.py bench/out/bench.pcap            # the compiled kernels
    TCPFSM_PURE=1 .venv/bin/python bench/decode_speed.py bench/out/bench.pcap   # their plain-Python sources
"""
from __future__ import annotations

import argparse
import time

import tcpfsm
from tcpfsm.capture.reader import open_capture


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    best = float("inf")
    for _ in range(args.runs):
        t = time.perf_counter()
        cap = open_capture(args.capture)
        rows = sum(len(b) for b in cap.batches())
        best = min(best, time.perf_counter() - t)
    rec = cap.info.records
    print(f"{args.capture}: {rec} records, {rows} TCP segments; best of {args.runs}: {best:.3f} s, "
          f"{rec / best / 1e6:.2f} M records/s; kernels compiled: {tcpfsm.compiled()}")


if __name__ == "__main__":
    main()
