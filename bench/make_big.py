#!/usr/bin/env python3
"""Build a >= 4 GiB capture by repeating bench/out/bench.pcap.

Copy k (k = 0, 1, ...) of the source capture is written with
  * every timestamp shifted by k * D seconds, D = ceil(last - first) + 1, so
    each copy starts at least 1 s after the previous one ends;
  * the client's IPv4 address moved to a distinct one: its third octet + k
    (10.77.0.2 -> 10.77.k.2), so every copy's connections are new 4-tuples
    (the server address stays, as for many clients of one server).
The IPv4 header checksum and the TCP checksum are patched incrementally
(RFC 1624) for the changed address, so the output stays checksum-valid for
tools that check (tcpfsm does not).

Streaming: the source (~125 MB) is read once; each copy is patched in one
numpy buffer and written out, so memory stays ~2x the source whatever the
output size. Only classic pcap, Ethernet, IPv4 is rewritten (that is what
make_capture.py records); other records are copied with only the timestamp
shifted.

    python3 bench/make_big.py                 # -> bench/out/big.pcap (+ big_pcap.json)
    python3 bench/make_big.py --gib 8 --force
"""
from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_SRC = HERE / "out" / "bench.pcap"
DEFAULT_OUT = HERE / "out" / "big.pcap"

MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1_000_000), b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
          b"\xa1\xb2\xc3\xd4": (">", 1_000_000), b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000)}


def walk(data: bytes, order: str) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of each record header and its incl_len."""
    rec = struct.Struct(order + "IIII")
    offs, caps = [], []
    off, n = 24, len(data)
    while off + 16 <= n:
        _, _, incl, _ = rec.unpack_from(data, off)
        if off + 16 + incl > n:
            print(f"make_big: truncated last record at byte {off}, dropped", file=sys.stderr)
            break
        offs.append(off)
        caps.append(incl)
        off += 16 + incl
    return np.array(offs, dtype=np.int64), np.array(caps, dtype=np.int64)


def u16be(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (buf[pos].astype(np.uint32) << 8) | buf[pos + 1]


def u32(buf: np.ndarray, pos: np.ndarray, order: str) -> np.ndarray:
    b = [buf[pos + i].astype(np.uint64) for i in range(4)]
    if order == "<":
        return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]


def put_u32(buf: np.ndarray, pos: np.ndarray, val: np.ndarray, order: str) -> None:
    val = val.astype(np.uint64)
    for i in range(4):
        shift = 8 * i if order == "<" else 8 * (3 - i)
        buf[pos + i] = ((val >> shift) & 0xFF).astype(np.uint8)


def csum_update(old_csum: np.ndarray, old_word: np.ndarray, new_word: np.ndarray) -> np.ndarray:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')  (16-bit one's complement)."""
    s = ((~old_csum) & 0xFFFF) + ((~old_word) & 0xFFFF) + new_word
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--gib", type=float, default=4.0, help="minimum output size in GiB (default 4)")
    ap.add_argument("--copies", type=int, default=None, help="exact number of copies (overrides --gib)")
    ap.add_argument("--client", default=None,
                    help="client IPv4 address to move per copy (default: source of most pure SYNs)")
    ap.add_argument("--force", action="store_true", help="rebuild even if --out looks complete")
    args = ap.parse_args()

    src = args.src.resolve()
    if not src.exists():
        print(f"make_big: {src} missing; run bench/make_capture.py first", file=sys.stderr)
        return 1
    data = src.read_bytes()
    order, tick = MAGICS.get(data[:4], (None, None))
    if order is None:
        print(f"make_big: {src} is not a classic pcap", file=sys.stderr)
        return 1
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    body = len(data) - 24
    copies = args.copies or math.ceil((args.gib * 2**30 - 24) / body)
    if copies < 1 or copies > 256:
        print(f"make_big: {copies} copies: need 1..256 (the client's third octet is shifted)",
              file=sys.stderr)
        return 1
    meta_path = args.out.with_name(args.out.stem + "_pcap.json")
    expect = 24 + copies * body
    if (not args.force and args.out.exists() and meta_path.exists()
            and args.out.stat().st_size == expect
            and json.loads(meta_path.read_text()).get("source_bytes") == len(data)):
        print(f"make_big: {args.out} already built ({expect / 1e9:.2f} GB, {copies} copies); "
              f"--force to rebuild")
        return 0

    t0 = time.perf_counter()
    offs, caps = walk(data, order)
    n = len(offs)
    src_np = np.frombuffer(data, dtype=np.uint8)
    ts_sec = u32(src_np, offs, order)
    ts_frac = u32(src_np, offs + 4, order)
    first = ts_sec.min() + ts_frac[ts_sec == ts_sec.min()].min() / tick
    last_i = int(np.argmax(ts_sec * tick + ts_frac))
    last = ts_sec[last_i] + ts_frac[last_i] / tick
    step = int(math.ceil(last - first)) + 1

    # Ethernet / IPv4 records with the whole IPv4 header captured
    ip4 = np.zeros(n, dtype=bool)
    pkt = offs + 16
    if linktype == 1:
        ok = caps >= 14 + 20
        et = np.zeros(n, dtype=np.uint32)
        et[ok] = u16be(src_np, pkt[ok] + 12)
        ver_ihl = np.zeros(n, dtype=np.uint32)
        ver_ihl[ok] = src_np[pkt[ok] + 14]
        ihl = (ver_ihl & 0x0F) * 4
        ip4 = ok & (et == 0x0800) & ((ver_ihl >> 4) == 4) & (ihl >= 20) & (caps >= 14 + ihl)
    l3 = pkt + 14
    sel = np.nonzero(ip4)[0]
    l3s = l3[sel]
    ihl_s = (src_np[l3s].astype(np.int64) & 0x0F) * 4
    proto = src_np[l3s + 9]
    frag = u16be(src_np, l3s + 6) & 0x1FFF
    tcp_ck = (proto == 6) & (frag == 0) & (caps[sel] >= 14 + ihl_s + 18)
    srcaddr = u32(src_np, l3s + 12, ">")
    dstaddr = u32(src_np, l3s + 16, ">")

    if args.client:
        client = int(ipaddress.IPv4Address(args.client))
    else:   # source of the most pure SYNs
        flags = np.zeros(len(sel), dtype=np.uint32)
        flags[tcp_ck] = src_np[l3s[tcp_ck] + ihl_s[tcp_ck] + 13]
        syn = tcp_ck & ((flags & 0x12) == 0x02)
        if not syn.any():
            print("make_big: no SYNs found; pass --client", file=sys.stderr)
            return 1
        client = collections.Counter(srcaddr[syn].tolist()).most_common(1)[0][0]
    octet3 = (client >> 8) & 0xFF
    if octet3 + copies - 1 > 255:
        print(f"make_big: client {ipaddress.IPv4Address(client)}: third octet would wrap "
              f"with {copies} copies", file=sys.stderr)
        return 1
    others = set(srcaddr.tolist()) | set(dstaddr.tolist())
    for k in range(1, copies):
        if client + (k << 8) in others - {client}:
            print(f"make_big: moved client {ipaddress.IPv4Address(client + (k << 8))} collides with "
                  f"an address in the capture; pass --client", file=sys.stderr)
            return 1

    # positions to patch: (record index in sel, byte offset of the address, is-src)
    is_src = srcaddr == client
    is_dst = dstaddr == client
    ip_ck_pos = l3s + 10
    tcp_ck_pos = l3s + ihl_s + 16
    # the 16-bit word holding octets 3-4 of the address: offset 14 (src) / 18 (dst) of IPv4
    words = []
    for mask, off in ((is_src, 14), (is_dst, 18)):
        idx = np.nonzero(mask)[0]
        words.append((l3s[idx] + off, idx))
    print(f"make_big: {src.name}: {n:,} records, {body / 1e6:.1f} MB, span {last - first:.1f} s; "
          f"{copies} copies, step {step} s, client {ipaddress.IPv4Address(client)} "
          f"(in {int(is_src.sum() + is_dst.sum()):,} headers); scanned in "
          f"{time.perf_counter() - t0:.1f}s", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part")
    buf = np.empty_like(src_np)
    with open(tmp, "wb") as f:
        f.write(data[:24])
        for k in range(copies):
            buf[:] = src_np
            if k:
                put_u32(buf, offs, ts_sec + k * step, order)
                ipck = u16be(src_np, ip_ck_pos).astype(np.uint32)
                tck_full = np.zeros(len(sel), dtype=np.uint32)
                tck_full[tcp_ck] = u16be(src_np, tcp_ck_pos[tcp_ck])
                new_ipck, new_tck = ipck.copy(), tck_full.copy()
                for pos, idx in words:
                    old = u16be(src_np, pos).astype(np.uint32)
                    new = (old + (k << 8)) & 0xFFFF        # third octet + k (no wrap, checked)
                    buf[pos] = (new >> 8).astype(np.uint8)
                    new_ipck[idx] = csum_update(new_ipck[idx], old, new)
                    t = tcp_ck[idx]
                    new_tck[idx[t]] = csum_update(new_tck[idx[t]], old[t], new[t])
                buf[ip_ck_pos] = (new_ipck >> 8).astype(np.uint8)
                buf[ip_ck_pos + 1] = (new_ipck & 0xFF).astype(np.uint8)
                tp = tcp_ck_pos[tcp_ck]
                buf[tp] = (new_tck[tcp_ck] >> 8).astype(np.uint8)
                buf[tp + 1] = (new_tck[tcp_ck] & 0xFF).astype(np.uint8)
            f.write(buf[24:].data)
            done = (k + 1) * body
            el = time.perf_counter() - t0
            print(f"  copy {k + 1}/{copies}: {done / 1e9:.2f} GB, {el:.0f}s "
                  f"({done / 1e6 / el:.0f} MB/s)", flush=True)
    tmp.replace(args.out)
    size = args.out.stat().st_size
    meta = {"file": str(args.out.resolve()), "file_bytes": size, "source": str(src),
            "source_bytes": len(data), "source_packets": n, "copies": copies,
            "packets": n * copies, "step_seconds": step,
            "client": str(ipaddress.IPv4Address(client)),
            "client_per_copy": f"third octet + copy index "
                               f"({ipaddress.IPv4Address(client)} .. "
                               f"{ipaddress.IPv4Address(client + ((copies - 1) << 8))})",
            "seconds": round(time.perf_counter() - t0, 1)}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"make_big: {args.out} {size / 1e9:.2f} GB ({size / 2**30:.2f} GiB), "
          f"{n * copies:,} packets, {copies} copies, in {meta['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
