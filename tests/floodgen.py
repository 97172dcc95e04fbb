"""Spoofed SYN floods written straight to pcap with numpy: the load tests' captures, made in a second.

Not a test module: `write_flood(path, n, ...)` writes `n` SYNs from random IPv4 sources and ports to one
service, evenly spread over `seconds`; with `answered` the server's SYN+ACK follows each of that share of
them 100 us later (a server that answers from its backlog or with cookies). Checksums are left zero
(capture offload looks the same); the analysis does not need them."""
from __future__ import annotations

import numpy as np

_PCAP_HEADER = np.array([0xA1B2C3D4, 0x00040002, 0, 0, 65535, 1], "<u4").tobytes()[:24]


def _frames(src, dst, sport, dport, flags, seq, ack) -> np.ndarray:
    n = len(src)
    f = np.zeros((n, 54), np.uint8)
    f[:, 0:6] = [2, 0, 0, 0, 0, 1]
    f[:, 6:12] = [2, 0, 0, 0, 0, 2]
    f[:, 12:14] = [8, 0]
    f[:, 14] = 0x45
    f[:, 16:18] = [0, 40]
    f[:, 22] = 64
    f[:, 23] = 6
    f[:, 26:30] = src.astype(">u4").view(np.uint8).reshape(n, 4)
    f[:, 30:34] = dst.astype(">u4").view(np.uint8).reshape(n, 4)
    f[:, 34:36] = sport.astype(">u2").view(np.uint8).reshape(n, 2)
    f[:, 36:38] = dport.astype(">u2").view(np.uint8).reshape(n, 2)
    f[:, 38:42] = seq.astype(">u4").view(np.uint8).reshape(n, 4)
    f[:, 42:46] = ack.astype(">u4").view(np.uint8).reshape(n, 4)
    f[:, 46] = 0x50
    f[:, 47] = flags
    f[:, 48:50] = [0xFA, 0xF0]
    return f


def write_flood(path: str, n: int, seconds: float = 10.0, answered: float = 0.0, seed: int = 1,
                server: int = 0x0A000001, port: int = 80, start: float = 1_700_000_000.0) -> None:
    rng = np.random.default_rng(seed)
    src = rng.integers(0x0B000000, 0xDF000000, n, dtype=np.int64)
    sport = rng.integers(1024, 65536, n, dtype=np.int64)
    isn = rng.integers(0, 2**32, n, dtype=np.int64)
    us = (start * 1e6 + np.arange(n, dtype=np.int64) * int(seconds * 1e6) // max(n, 1)).astype(np.int64)
    dst = np.full(n, server, np.int64)
    dport = np.full(n, port, np.int64)
    syn = _frames(src, dst, sport, dport, 0x02, isn, np.zeros(n, np.int64))
    rows = [(us, syn)]
    k = int(n * answered)
    if k:
        pick = np.sort(rng.choice(n, k, replace=False))
        sa = _frames(dst[pick], src[pick], dport[pick], sport[pick], 0x12,
                     rng.integers(0, 2**32, k, dtype=np.int64), (isn[pick] + 1) & 0xFFFFFFFF)
        rows.append((us[pick] + 100, sa))
    ts = np.concatenate([r[0] for r in rows])
    frames = np.concatenate([r[1] for r in rows])
    order = np.argsort(ts, kind="stable")
    ts, frames = ts[order], frames[order]
    m = len(ts)
    rec = np.zeros((m, 16 + 54), np.uint8)
    hdr = np.stack([ts // 1_000_000, ts % 1_000_000, np.full(m, 54), np.full(m, 54)], 1).astype("<u4")
    rec[:, :16] = hdr.view(np.uint8).reshape(m, 16)
    rec[:, 16:] = frames
    with open(path, "wb") as f:
        f.write(_PCAP_HEADER)
        f.write(rec.tobytes())
