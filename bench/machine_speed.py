#!/usr/bin/env python3
"""The endpoint machines alone, compiled against uncompiled: microseconds per connection.

Feeds N eight-packet connections (handshake, one data segment and its ACK, FIN both ways, last ACK)
through tcpfsm.fsm.machine_c.Connection and tcpfsm.fsm.machine.Connection in this one process, with the
timers checked before each segment as the tracker does, and prints the best of --repeat runs (CPU time).

    python bench/machine_speed.py [--connections 20000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import importlib
import time

SEGS = [(True, 0x02, 1000, 0, 0), (False, 0x12, 5000, 1001, 0), (True, 0x10, 1001, 5001, 0),
        (True, 0x18, 1001, 5001, 100), (False, 0x10, 5001, 1101, 0),
        (True, 0x11, 1101, 5001, 0), (False, 0x11, 5001, 1102, 0), (True, 0x10, 1102, 5002, 0)]


def run(mod, obs, prof, n: int) -> float:
    c0 = time.process_time()
    for k in range(n):
        conn = mod.Connection(prof, obs.Observer("auto"))
        ts = 10**18 + k * 10**6
        conn.start(ts, True, 0x02)
        for i, (fc, fl, seq, ack, plen) in enumerate(SEGS):
            ts += 1000
            conn.expire(ts)
            conn.feed(ts, i + 1, fc, fl, seq, ack, 65535, plen, -1, 40 + plen)
            conn.next_deadline()
        conn.settle(ts + 10**11)
    return time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from tcpfsm.fsm import get_profile
    prof = get_profile("linux")
    forms = [("pure", "tcpfsm.fsm.machine", "tcpfsm.fsm.machine")]
    try:
        importlib.import_module("tcpfsm.fsm.machine_c")
        forms.insert(0, ("compiled", "tcpfsm.fsm.machine_c", "tcpfsm.fsm.machine_c"))
    except ImportError:
        print("compiled machine not built (make venv)")
    for name, m, o in forms:
        mod, obs = importlib.import_module(m), importlib.import_module(o)
        best = min(run(mod, obs, prof, a.connections) for _ in range(a.repeat))
        print(f"{name:9s} {best / a.connections * 1e6:7.1f} us per connection ({a.connections} connections, "
              f"best of {a.repeat})")


if __name__ == "__main__":
    main()
