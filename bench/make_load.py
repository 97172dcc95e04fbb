#!/usr/bin/env python3
"""Generate the two load captures of `make bench` with numpy (seconds, no scapy):

  flood   a spoofed SYN flood: --syns SYNs (default 2,000,000: a 140 MB pcap) from random IPv4 sources
          and ports to one server port, at --rate SYNs per second; nothing answers.
  open    --conns connections (default 200,000) that never close: SYN, SYN-ACK, ACK, 100 bytes from the
          client, the server's ACK -- then silence until the end of the capture.

Every packet is Ethernet + IPv4 + TCP with correct IP and TCP checksums (no options), pcap with µs
timestamps. Files go to bench/out/ (flood_<N>.pcap, open_<N>.pcap) and are rebuilt only when missing
(--force rebuilds). The layout is fixed so the sizes are exact: 70 bytes a SYN, 16 + 54 (+100) a packet.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
HDR = 16 + 14 + 20 + 20                  # pcap record header + Ethernet + IPv4 + TCP
SYN, ACK, PSH = 0x02, 0x10, 0x08
SERVER_IP = 0x0A000001                   # 10.0.0.1
CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")


def pcap_header(snaplen: int = 65535) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)


def _be(a: np.ndarray, off: int, width: int, values) -> None:
    """Write `values` big-endian into bytes off..off+width of every row of `a`."""
    v = np.ascontiguousarray(np.asarray(values).astype(f">u{width}"))
    a[:, off:off + width] = v.reshape(-1, 1).view(np.uint8).reshape(-1, width)     # one row, or one per packet


def _csum(words: np.ndarray) -> np.ndarray:
    """The Internet checksum of each row of big-endian 16-bit words (rows summed as uint64)."""
    s = words.astype(np.uint64).sum(axis=1)
    while (s >> 16).any():
        s = (s & 0xFFFF) + (s >> 16)
    return (~s.astype(np.uint16)) & 0xFFFF


def packets(ts_us: np.ndarray, src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport, seq, ack, flags,
            to_server: np.ndarray | bool, payload: int = 0, win: int = 64240) -> np.ndarray:
    """One pcap record per row (uint8, shape (n, 70 + payload)): header, Ethernet, IPv4, TCP, payload."""
    n = len(ts_us)
    a = np.zeros((n, HDR + payload), np.uint8)
    ts_us = np.asarray(ts_us, np.int64)
    a[:, 0:4] = (ts_us // 1_000_000).astype("<u4").view(np.uint8).reshape(n, 4)
    a[:, 4:8] = (ts_us % 1_000_000).astype("<u4").view(np.uint8).reshape(n, 4)
    a[:, 8:12] = np.frombuffer(struct.pack("<I", HDR - 16 + payload), np.uint8)
    a[:, 12:16] = a[:, 8:12]
    ts = np.broadcast_to(np.asarray(to_server), (n,))
    cm, sm = np.frombuffer(CLIENT_MAC, np.uint8), np.frombuffer(SERVER_MAC, np.uint8)
    a[:, 16:22] = np.where(ts[:, None], sm, cm)            # destination MAC
    a[:, 22:28] = np.where(ts[:, None], cm, sm)            # source MAC
    _be(a, 28, 2, 0x0800)
    ip = 30
    a[:, ip] = 0x45
    _be(a, ip + 2, 2, 40 + payload)
    _be(a, ip + 4, 2, np.arange(n, dtype=np.uint32) & 0xFFFF)
    _be(a, ip + 6, 2, 0x4000)                              # DF
    a[:, ip + 8] = 64
    a[:, ip + 9] = 6
    _be(a, ip + 12, 4, src)
    _be(a, ip + 16, 4, dst)
    _be(a, ip + 10, 2, _csum(a[:, ip:ip + 20].copy().view(">u2")))
    tcp = ip + 20
    _be(a, tcp, 2, sport)
    _be(a, tcp + 2, 2, dport)
    _be(a, tcp + 4, 4, seq)
    _be(a, tcp + 8, 4, ack)
    a[:, tcp + 12] = 5 << 4
    a[:, tcp + 13] = flags
    _be(a, tcp + 14, 2, win)
    if payload:
        a[:, tcp + 20:] = (np.arange(payload) % 26 + 97).astype(np.uint8)
    # pseudo header (src, dst, zero+proto, TCP length) + TCP header + payload, as 16-bit words
    pseudo = np.concatenate([a[:, ip + 12:ip + 20], np.zeros((n, 1), np.uint8), np.full((n, 1), 6, np.uint8),
                             np.frombuffer(struct.pack(">H", 20 + payload), np.uint8)[None, :].repeat(n, 0),
                             a[:, tcp:], np.zeros((n, payload % 2), np.uint8)], axis=1)
    _be(a, tcp + 16, 2, _csum(pseudo.view(">u2")))
    return a


def flood(path: Path, syns: int, rate: float, seed: int = 1, chunk: int = 1 << 20) -> None:
    """`syns` SYNs from random sources to 10.0.0.1:80, written in chunks (memory stays ~chunk * 200 B)."""
    rng = np.random.default_rng(seed)
    t0 = 1_764_000_000 * 1_000_000
    with open(path, "wb") as f:
        f.write(pcap_header())
        for start in range(0, syns, chunk):
            n = min(chunk, syns - start)
            i = np.arange(start, start + n, dtype=np.int64)
            src = rng.integers(0x01000000, 0xDF000000, n, dtype=np.uint32)      # unicast, spoofed
            a = packets(t0 + (i * 1_000_000 / rate).astype(np.int64), src, SERVER_IP,
                        rng.integers(1024, 65536, n, dtype=np.uint32), 80,
                        rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32), 0, SYN, True)
            f.write(a.tobytes())


def open_conns(path: Path, conns: int, rate: float, seed: int = 2, chunk: int = 1 << 18) -> None:
    """`conns` connections to 10.0.0.1:443 from 10.1.0.0/16.. (60,000 ports per client address), each
    SYN, SYN-ACK, ACK, 100 bytes client -> server, ACK; never closed. A connection's five packets take
    0.3 ms; connections start 1/rate apart, so records are in time order connection by connection."""
    rng = np.random.default_rng(seed)
    t0 = 1_764_000_000 * 1_000_000
    rtt = 100                               # µs
    with open(path, "wb") as f:
        f.write(pcap_header())
        for start in range(0, conns, chunk):
            n = min(chunk, conns - start)
            i = np.arange(start, start + n, dtype=np.int64)
            t = t0 + (i * 1_000_000 / rate).astype(np.int64)
            cip = (0x0A010000 + i // 60_000).astype(np.uint32)
            cport = (1024 + i % 60_000).astype(np.uint32)
            cisn = rng.integers(0, 1 << 32, n, dtype=np.uint64)
            sisn = rng.integers(0, 1 << 32, n, dtype=np.uint64)
            c1, s1 = ((cisn + 1) & 0xFFFFFFFF).astype(np.uint32), ((sisn + 1) & 0xFFFFFFFF).astype(np.uint32)
            c2 = ((cisn + 101) & 0xFFFFFFFF).astype(np.uint32)
            parts = [
                packets(t, cip, SERVER_IP, cport, 443, cisn.astype(np.uint32), 0, SYN, True),
                packets(t + rtt, SERVER_IP, cip, 443, cport, sisn.astype(np.uint32), c1, SYN | ACK, False),
                packets(t + rtt + 10, cip, SERVER_IP, cport, 443, c1, s1, ACK, True),
                packets(t + rtt + 20, cip, SERVER_IP, cport, 443, c1, s1, PSH | ACK, True, payload=100),
                packets(t + 2 * rtt + 20, SERVER_IP, cip, 443, cport, s1, c2, ACK, False),
            ]
            f.write(np.hstack(parts).tobytes())


def build(kind: str, count: int, rate: float | None = None, force: bool = False) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{kind}_{count}.pcap"
    if path.exists() and not force:
        return path
    tmp = path.with_suffix(".tmp")
    t = time.perf_counter()
    if kind == "flood":
        flood(tmp, count, rate or 20_000)
    else:
        open_conns(tmp, count, rate or 2_000)
    os.replace(tmp, path)
    print(f"make_load: {path.name}: {path.stat().st_size / 1e6:,.1f} MB in {time.perf_counter() - t:.1f} s",
          file=sys.stderr)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--syns", type=int, default=2_000_000, help="SYNs in the flood capture (0: none)")
    ap.add_argument("--syn-rate", type=float, default=20_000, help="SYNs per second")
    ap.add_argument("--conns", type=int, default=200_000, help="never-closing connections (0: none)")
    ap.add_argument("--conn-rate", type=float, default=2_000, help="new connections per second")
    ap.add_argument("--force", action="store_true", help="rebuild even if the file exists")
    args = ap.parse_args()
    if args.syns:
        print(build("flood", args.syns, args.syn_rate, args.force))
    if args.conns:
        print(build("open", args.conns, args.conn_rate, args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
