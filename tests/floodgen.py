"""Spoofed SYN floods (and connections that never close) for the load tests, made in a second.

Not a test module. The packets come from bench/make_load.py's `packets` (one implementation of the numpy
pcap writer); what is added here is what the tests need and the bench captures do not have: a share of
the SYNs answered by a SYN+ACK that is never retransmitted (a SYN-cookie server), and connections that
speak once more after a long silence (so that a capped stream must recognise them).
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from make_load import SERVER_IP, packets, pcap_header  # noqa: E402

SYN, ACK = 0x02, 0x10


def write_records(path: str, parts: list[np.ndarray], ts: list[np.ndarray]) -> None:
    """Records of every part, in time order (stable: a part listed first wins a tie)."""
    order = np.argsort(np.concatenate(ts), kind="stable")
    width = max(p.shape[1] for p in parts)
    with open(path, "wb") as f:
        f.write(pcap_header())
        if all(p.shape[1] == width for p in parts):
            f.write(np.concatenate(parts)[order].tobytes())
        else:
            rows = [r for p in parts for r in p]
            f.write(b"".join(rows[i].tobytes() for i in order))


def write_flood(path: str, n: int, seconds: float = 10.0, answered: float = 0.0, seed: int = 1,
                port: int = 80, start_s: int = 1_700_000_000) -> None:
    """`n` SYNs from random IPv4 sources and ports to 10.0.0.1:`port`, evenly over `seconds`; a share
    `answered` of them gets the server's SYN+ACK 100 us later."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0x0B000000, 0xDF000000, n, dtype=np.uint32)
    sport = rng.integers(1024, 65536, n, dtype=np.uint32)
    isn = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    t = start_s * 1_000_000 + (np.arange(n, dtype=np.int64) * int(seconds * 1e6)) // max(n, 1)
    parts = [packets(t, src, SERVER_IP, sport, port, isn.astype(np.uint32), 0, SYN, True)]
    ts = [t]
    k = int(n * answered)
    if k:
        pick = np.sort(rng.choice(n, k, replace=False))
        sisn = rng.integers(0, 1 << 32, k, dtype=np.uint64).astype(np.uint32)
        parts.append(packets(t[pick] + 100, SERVER_IP, src[pick], port, sport[pick], sisn,
                             ((isn[pick] + 1) & 0xFFFFFFFF).astype(np.uint32), SYN | ACK, False))
        ts.append(t[pick] + 100)
    write_records(path, parts, ts)


def write_established(path: str, n: int, seconds: float = 10.0, late_at: float = 30.0, seed: int = 2,
                      port: int = 443, start_s: int = 1_700_000_000) -> None:
    """`n` connections from distinct clients that complete their handshake over `seconds`, fall silent, and
    each send one more ACK at `late_at` s (in handshake order): connections that never close."""
    rng = np.random.default_rng(seed)
    i = np.arange(n, dtype=np.int64)
    cip = (0x0B000000 + i * 7).astype(np.uint32)
    cport = rng.integers(1024, 65536, n, dtype=np.uint32)
    cisn = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    sisn = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    c1 = ((cisn + 1) & 0xFFFFFFFF).astype(np.uint32)
    s1 = ((sisn + 1) & 0xFFFFFFFF).astype(np.uint32)
    t = start_s * 1_000_000 + (i * int(seconds * 1e6)) // max(n, 1)
    late = t + int(late_at * 1e6)
    parts = [packets(t, cip, SERVER_IP, cport, port, cisn.astype(np.uint32), 0, SYN, True),
             packets(t + 100, SERVER_IP, cip, port, cport, sisn.astype(np.uint32), c1, SYN | ACK, False),
             packets(t + 200, cip, SERVER_IP, cport, port, c1, s1, ACK, True),
             packets(late, cip, SERVER_IP, cport, port, c1, s1, ACK, True)]
    write_records(path, parts, [t, t + 100, t + 200, late])
