"""Structure-aware mutations of pcap / pcapng captures, for the fuzz harness (fuzz/run.py).

A seed capture is parsed into a small model -- the file header (pcap global header, or pcapng
blocks: SHB, IDB, EPB, SPB and whatever else, kept raw) and its packet records -- and a mutation is a
tuple of plain integers `(op, a, b, c)` applied to that model: which record (`a`), which field or
place (`b`), which value (`c`). Lengths are re-derived when the model is written back unless a
mutation sets one on purpose, so most mutants stay well-formed enough to reach the decoder, the
tracker and the renderers instead of dying at the first header. Plain integers are what hypothesis
shrinks best: a failing list of mutations shrinks to the fewest ops with the smallest numbers.

Knows: pcap (both byte orders, µs and ns magics), pcapng (either byte order, several sections,
interfaces with options), link types Ethernet (+VLAN/QinQ), Linux SLL/SLL2, NULL/LOOP and raw IP,
IPv4 / IPv6, TCP and its options; and gzip/bz2/xz wrapping, which the reader accepts.
This module owns no test oracle: it only makes bytes (fuzz/run.py judges what tcpfsm does with them).
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import struct
from dataclasses import dataclass, field

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
               b"\xa1\xb2\x3c\x4d": ">"}
PCAPNG_SHB = 0x0A0D0D0A
LINKTYPES = (1, 113, 276, 0, 108, 101, 12, 14, 228, 229, 105, 127, 9, 147, 0xFFFF, 0x7FFFFFFF)
ETHERTYPES = (0x0800, 0x86DD, 0x8100, 0x88A8, 0x0806, 0x8847, 0x8864, 0x9100, 0x0000, 0xFFFF)
IP_PROTOS = (6, 17, 1, 4, 41, 47, 0, 43, 44, 60, 58, 255)
TCP_OPTION_KINDS = (0, 1, 2, 3, 4, 5, 8, 30, 34, 253, 254, 255)


@dataclass
class Record:
    """One packet record: its timestamp (seconds + fraction in the file's units), lengths and bytes."""
    ts_hi: int                 # pcap: seconds; pcapng: high 32 bits
    ts_lo: int                 # pcap: µs/ns; pcapng: low 32 bits
    orig: int
    data: bytearray
    iface: int = 0             # pcapng only
    caplen: int | None = None  # None: len(data) when written
    kind: int = 6              # pcapng block type (6 EPB, 3 SPB, 2 obsolete PB); pcap: 0
    opts: bytes = b""          # pcapng block options (raw)
    linktype: int = 1


@dataclass
class Block:
    """A pcapng block that is not a packet: kept as raw body bytes (SHB / IDB fields are mutated in place)."""
    btype: int
    body: bytearray
    length: int | None = None          # total length written; None: derived
    trailer: int | None = None         # trailing length copy; None: same as length


@dataclass
class Model:
    kind: str                                   # "pcap" | "pcapng"
    endian: str
    header: bytearray = field(default_factory=bytearray)        # pcap: 24 bytes
    items: list = field(default_factory=list)   # pcap: Records; pcapng: Blocks and Records in file order
    linktypes: list = field(default_factory=list)
    tail: bytes = b""                           # trailing bytes that did not parse (kept)

    def records(self) -> list[Record]:
        return [x for x in self.items if isinstance(x, Record)]


# -- parsing -----------------------------------------------------------------------------------
def parse(data: bytes) -> Model | None:
    """The model of a seed capture, or None when it is neither pcap nor pcapng (the seed is then mutated
    as raw bytes only)."""
    if data[:4] in PCAP_MAGICS and len(data) >= 24:
        return _parse_pcap(data)
    if len(data) >= 12 and struct.unpack_from("<I", data)[0] == PCAPNG_SHB:
        return _parse_pcapng(data)
    return None


def _parse_pcap(data: bytes) -> Model:
    e = PCAP_MAGICS[data[:4]]
    m = Model("pcap", e, bytearray(data[:24]))
    lt = struct.unpack_from(e + "I", data, 20)[0] & 0x0FFFFFFF
    m.linktypes = [lt]
    off = 24
    while off + 16 <= len(data):
        s, f, incl, orig = struct.unpack_from(e + "IIII", data, off)
        if off + 16 + incl > len(data):
            break
        m.items.append(Record(s, f, orig, bytearray(data[off + 16:off + 16 + incl]), kind=0, linktype=lt))
        off += 16 + incl
    m.tail = bytes(data[off:])
    return m


def _parse_pcapng(data: bytes) -> Model:
    m = Model("pcapng", "<")
    off = 0
    e = "<"
    section_ifaces: list[int] = []
    while off + 12 <= len(data):
        btype = struct.unpack_from(e + "I", data, off)[0]
        if btype == PCAPNG_SHB:
            bom = data[off + 8:off + 12]
            e = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            if not m.items:
                m.endian = e
            section_ifaces = []
        blen = struct.unpack_from(e + "I", data, off + 4)[0]
        if blen < 12 or off + blen > len(data) or blen % 4:
            break
        body = data[off + 8:off + blen - 4]
        if btype in (6, 2) and len(body) >= 20:
            iface, hi, lo, cap, orig = struct.unpack_from(e + "IIIII", body)
            if btype == 2:
                iface &= 0xFFFF
            if 20 + cap <= len(body):
                padded = 20 + (cap + 3) // 4 * 4
                lt = section_ifaces[iface] if iface < len(section_ifaces) else 1
                m.items.append(Record(hi, lo, orig, bytearray(body[20:20 + cap]), iface=iface, kind=btype,
                                      opts=bytes(body[padded:]), linktype=lt))
                off += blen
                continue
        if btype == 3 and len(body) >= 4:
            orig = struct.unpack_from(e + "I", body)[0]
            lt = section_ifaces[0] if section_ifaces else 1
            m.items.append(Record(0, 0, orig, bytearray(body[4:4 + min(orig, len(body) - 4)]), kind=3, linktype=lt))
            off += blen
            continue
        if btype == 1 and len(body) >= 8:
            lt = struct.unpack_from(e + "H", body)[0]
            section_ifaces.append(lt)
            m.linktypes.append(lt)
        m.items.append(Block(btype, bytearray(body)))
        off += blen
    m.tail = bytes(data[off:])
    return m


# -- writing -----------------------------------------------------------------------------------
def serialize(m: Model) -> bytes:
    out = bytearray()
    if m.kind == "pcap":
        out += m.header
        e = m.endian
        for r in m.items:
            cap = len(r.data) if r.caplen is None else r.caplen
            out += struct.pack(e + "IIII", r.ts_hi & 0xFFFFFFFF, r.ts_lo & 0xFFFFFFFF, cap & 0xFFFFFFFF,
                               r.orig & 0xFFFFFFFF)
            out += r.data
        return bytes(out + m.tail)
    e = m.endian
    for x in m.items:
        if isinstance(x, Block):
            if x.btype == PCAPNG_SHB and len(x.body) >= 4:
                e = "<" if bytes(x.body[:4]) == b"\x4d\x3c\x2b\x1a" else ">"
            body = bytes(x.body)
            body += b"\0" * (-len(body) % 4)
            n = 12 + len(body) if x.length is None else x.length
            t = n if x.trailer is None else x.trailer
            out += struct.pack(e + "II", x.btype & 0xFFFFFFFF, n & 0xFFFFFFFF) + body + struct.pack(e + "I", t & 0xFFFFFFFF)
            continue
        r = x
        cap = len(r.data) if r.caplen is None else r.caplen
        pad = b"\0" * (-len(r.data) % 4)
        if r.kind == 3:
            body = struct.pack(e + "I", r.orig & 0xFFFFFFFF) + bytes(r.data) + pad
        else:
            iface = r.iface & (0xFFFF if r.kind == 2 else 0xFFFFFFFF)
            head = struct.pack(e + "IIIII", iface, r.ts_hi & 0xFFFFFFFF, r.ts_lo & 0xFFFFFFFF, cap & 0xFFFFFFFF,
                               r.orig & 0xFFFFFFFF)
            body = head + bytes(r.data) + pad + r.opts
        n = 12 + len(body)
        out += struct.pack(e + "II", r.kind, n) + body + struct.pack(e + "I", n)
    return bytes(out + m.tail)


# -- values ------------------------------------------------------------------------------------
def pick(c: int, width: int, actual: int = 0) -> int:
    """An interesting value for a field of `width` bytes, chosen by `c` (0 shrinks to zero)."""
    top = (1 << (8 * width)) - 1
    sel, rest = c % 10, c // 10
    v = (0, top, actual + 1 + rest % 64, actual - 1 - rest % 64, top >> 1, 1, rest, (top >> 1) + 1,
         actual * 2 + rest % 3, actual ^ (1 << (rest % (8 * width))))[sel]
    return v & top


# -- packet layers -----------------------------------------------------------------------------
@dataclass
class Layers:
    """Offsets found in one packet: fields as (offset, width, kind) and the header boundaries."""
    fields: list
    bounds: list
    tcp: int | None = None          # offset of the TCP header
    tcp_end: int | None = None      # end of the TCP header (options included)
    ip: int | None = None


def layers(data: bytes | bytearray, linktype: int) -> Layers:
    F: list = []
    B: list = [0]
    n = len(data)
    off, et = 0, None
    if linktype == 1:
        F += [(12, 2, "ethertype")]
        off, et = 14, (data[12] << 8 | data[13]) if n >= 14 else None
        while et in (0x8100, 0x88A8, 0x9100) and off + 4 <= n:
            F += [(off, 2, "vlan"), (off + 2, 2, "ethertype")]
            et = data[off + 2] << 8 | data[off + 3]
            off += 4
    elif linktype == 113:
        F += [(0, 2, "sll_type"), (4, 2, "sll_alen"), (14, 2, "ethertype")]
        off, et = 16, (data[14] << 8 | data[15]) if n >= 16 else None
    elif linktype == 276:
        F += [(0, 2, "ethertype"), (10, 2, "sll2_hatype"), (11, 1, "sll2_alen")]
        off, et = 20, (data[0] << 8 | data[1]) if n >= 20 else None
    elif linktype in (0, 108):
        F += [(0, 4, "family")]
        off = 4
        et = {2: 0x0800, 24: 0x86DD, 28: 0x86DD, 30: 0x86DD}.get(
            (data[0] | data[3]) if n >= 4 else -1)
    else:
        et = 0x0800 if n and data[0] >> 4 == 4 else 0x86DD if n and data[0] >> 4 == 6 else None
    B.append(off)
    lay = Layers(F, B)
    if et == 0x0800 and off + 20 <= n:
        ihl = (data[off] & 15) * 4
        lay.ip = off
        F += [(off, 1, "ver_ihl"), (off + 1, 1, "tos"), (off + 2, 2, "ip_len"), (off + 4, 2, "ip_id"),
              (off + 6, 2, "frag"), (off + 8, 1, "ttl"), (off + 9, 1, "proto"), (off + 10, 2, "ip_csum"),
              (off + 12, 4, "ip_src"), (off + 16, 4, "ip_dst")]
        proto, off = data[off + 9], off + max(ihl, 20)
    elif et == 0x86DD and off + 40 <= n:
        lay.ip = off
        F += [(off, 4, "v6_vtcfl"), (off + 4, 2, "ip_len"), (off + 6, 1, "proto"), (off + 7, 1, "ttl"),
              (off + 8, 4, "ip_src"), (off + 24, 4, "ip_dst")]
        proto, off = data[off + 6], off + 40
    else:
        return lay
    B.append(off)
    if proto == 6 and off + 20 <= n:
        doff = (data[off + 12] >> 4) * 4
        lay.tcp, lay.tcp_end = off, min(off + max(doff, 20), n)
        F += [(off, 2, "sport"), (off + 2, 2, "dport"), (off + 4, 4, "seq"), (off + 8, 4, "ack"),
              (off + 12, 1, "doff"), (off + 13, 1, "flags"), (off + 14, 2, "win"), (off + 16, 2, "tcp_csum"),
              (off + 18, 2, "urp")]
        B += [off + 20, lay.tcp_end]
        p = off + 20
        while p < lay.tcp_end:                  # each option's kind and length byte
            F.append((p, 1, "opt_kind"))
            if data[p] in (0, 1):
                p += 1
                continue
            if p + 1 < lay.tcp_end:
                F.append((p + 1, 1, "opt_len"))
            p += max(data[p + 1] if p + 1 < lay.tcp_end else 1, 2)
    B.append(n)
    return lay


def _setfield(data: bytearray, off: int, width: int, value: int) -> None:
    if off + width <= len(data):
        data[off:off + width] = value.to_bytes(width, "big")


def tcp_options(c: int) -> bytes:
    """A run of TCP options from the digits of `c`: well-formed, short, over-long and zero-length ones."""
    out = bytearray()
    for _ in range(1 + c % 5):
        c //= 5
        kind = TCP_OPTION_KINDS[c % len(TCP_OPTION_KINDS)]
        c //= len(TCP_OPTION_KINDS)
        ln = (0, 1, 2, 4, 10, 18, 40, 255, 3, 8)[c % 10]
        c //= 10
        if kind in (0, 1):
            out.append(kind)
            continue
        out += bytes((kind, ln)) + bytes((c + i) & 0xFF for i in range(max(min(ln, 40) - 2, 0)))
    out += b"\0" * (-len(out) % 4)
    return bytes(out[:40])


# -- mutations ---------------------------------------------------------------------------------
OPS = ("file_header", "record_length", "record_time", "truncate_file", "record_order", "packet_field",
       "tcp_options", "packet_truncate", "byte_flip", "insert_bytes", "pcapng_structure", "splice")


def apply(m: Model | None, raw: bytes, ops: list[tuple[int, int, int, int]], other: Model | None = None) -> bytes:
    """The seed (`m` parsed from `raw`) after `ops`; `other` is a second seed for splicing records."""
    if m is None:
        data = bytearray(raw)
        for op, a, b, c in ops:
            if data:
                data[a % len(data)] ^= (c & 0xFF) or 1
        return bytes(data)
    cut: int | None = None
    flips: list = []
    for op, a, b, c in ops:
        name = OPS[op % len(OPS)]
        recs = m.records()
        r = recs[a % len(recs)] if recs else None
        if name == "file_header":
            _file_header(m, b, c)
        elif name == "record_length" and r is not None:
            if b % 3 == 0:
                r.caplen = pick(c, 4, len(r.data))
            elif b % 3 == 1:
                r.orig = pick(c, 4, r.orig)
            elif m.kind == "pcapng":
                r.iface = pick(c, 4, r.iface) if c % 2 else r.iface + 1 + c % 4
        elif name == "record_time" and r is not None:
            if b % 2:
                r.ts_hi = pick(c, 4, r.ts_hi)
            else:
                r.ts_lo = pick(c, 4, r.ts_lo)
        elif name == "truncate_file":
            cut = c
        elif name == "record_order" and recs:
            i, j = m.items.index(r), m.items.index(recs[b % len(recs)])
            what = c % 3
            if what == 0:
                del m.items[i]
            elif what == 1:
                m.items.insert(j, Record(r.ts_hi, r.ts_lo, r.orig, bytearray(r.data), r.iface, r.caplen, r.kind,
                                         r.opts, r.linktype))
            else:
                m.items[i], m.items[j] = m.items[j], m.items[i]
        elif name == "packet_field" and r is not None:
            lay = layers(r.data, r.linktype)
            if lay.fields:
                off, width, kind = lay.fields[b % len(lay.fields)]
                cur = int.from_bytes(r.data[off:off + width], "big")
                if kind == "ethertype" and c % 3 == 0:
                    v = ETHERTYPES[(c // 3) % len(ETHERTYPES)]
                elif kind == "proto" and c % 3 == 0:
                    v = IP_PROTOS[(c // 3) % len(IP_PROTOS)]
                elif kind == "flags" and c % 2 == 0:
                    v = (c // 2) & 0xFF
                elif kind == "doff" and c % 2 == 0:
                    v = ((c // 2) % 16) << 4 | (cur & 15)
                else:
                    v = pick(c, width, cur)
                _setfield(r.data, off, width, v)
        elif name == "tcp_options" and r is not None:
            lay = layers(r.data, r.linktype)
            if lay.tcp is not None:
                opts = tcp_options(c)
                r.data[lay.tcp + 20:lay.tcp_end] = opts
                if b % 2 == 0:                  # keep the data offset honest (or not)
                    r.data[lay.tcp + 12] = ((20 + len(opts)) // 4) << 4 | (r.data[lay.tcp + 12] & 15)
                _fix_ip_len(r, lay, b)
        elif name == "packet_truncate" and r is not None:
            lay = layers(r.data, r.linktype)
            at = lay.bounds[b % len(lay.bounds)] + (c % 7) - 3
            del r.data[max(at, 0):]
        elif name == "byte_flip":
            flips.append((a, c))
        elif name == "insert_bytes" and r is not None:
            lay = layers(r.data, r.linktype)
            at = lay.bounds[b % len(lay.bounds)]
            if c % 3 == 0 and r.linktype == 1 and at == 14:       # a VLAN tag (or a stack of them)
                r.data[12:12] = bytes((0x81, 0x00, (c >> 8) & 0x0F, (c >> 16) & 0xFF)) * (1 + (c >> 2) % 3)
            else:
                r.data[at:at] = bytes(((c >> 4) + i) & 0xFF for i in range(1 + (c >> 2) % 24))
        elif name == "pcapng_structure":
            _pcapng_structure(m, a, b, c)
        elif name == "splice" and other is not None and other.records():
            src = other.records()[b % len(other.records())]
            at = m.items.index(r) if r is not None else len(m.items)
            m.items.insert(at, Record(src.ts_hi, src.ts_lo, src.orig, bytearray(src.data), 0, None,
                                      0 if m.kind == "pcap" else 6, b"", src.linktype))
    data = bytearray(serialize(m))
    for a, c in flips:
        if data:
            data[a * 7919 % len(data)] ^= (c & 0xFF) or 1
    if cut is not None and data:
        data = data[:cut % (len(data) + 1)]
    return bytes(data)


def _fix_ip_len(r: Record, lay: Layers, b: int) -> None:
    if lay.ip is None or b % 4 == 3:
        return
    d = r.data
    if d[lay.ip] >> 4 == 4:
        _setfield(d, lay.ip + 2, 2, len(d) - lay.ip)
    else:
        _setfield(d, lay.ip + 4, 2, len(d) - lay.ip - 40)


def _file_header(m: Model, b: int, c: int) -> None:
    if m.kind == "pcap":
        e = m.endian
        which = b % 6
        if which == 0:
            m.header[:4] = list(PCAP_MAGICS)[c % 4] if c % 5 else bytes((c >> 3) & 0xFF for _ in range(4))
        elif which in (1, 2):                       # major, minor version
            struct.pack_into(e + "H", m.header, 2 + 2 * which, pick(c, 2, 2 if which == 1 else 4))
        elif which == 3:                            # thiszone, sigfigs
            struct.pack_into(e + "I", m.header, 8 + 4 * (c % 2), pick(c // 2, 4))
        elif which == 4:                            # snaplen
            struct.pack_into(e + "I", m.header, 16, pick(c, 4, 65535))
        else:                                       # linktype (and the FCS bits above it)
            lt = LINKTYPES[c % len(LINKTYPES)] if c % 4 else pick(c // 4, 4, 1)
            struct.pack_into(e + "I", m.header, 20, lt)
            for r in m.records():
                r.linktype = lt & 0x0FFFFFFF
        return
    blocks = [x for x in m.items if isinstance(x, Block) and x.btype in (PCAPNG_SHB, 1)]
    if not blocks:
        return
    blk = blocks[b % len(blocks)]
    e = m.endian
    if blk.btype == PCAPNG_SHB and len(blk.body) >= 16:
        which = c % 4
        if which == 0:
            blk.body[:4] = (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d", b"\0\0\0\0")[(c >> 2) % 3]
        elif which == 1:
            struct.pack_into(e + "H", blk.body, 4 + 2 * ((c >> 2) % 2), pick(c >> 3, 2, 1))
        elif which == 2:
            struct.pack_into(e + "Q", blk.body, 8, (c >> 2) if c & 4 else 0xFFFFFFFFFFFFFFFF)
        else:
            blk.body[16:] = _options(c >> 2)
    elif blk.btype == 1 and len(blk.body) >= 8:
        which = c % 3
        if which == 0:
            lt = LINKTYPES[(c >> 2) % len(LINKTYPES)] & 0xFFFF
            struct.pack_into(e + "H", blk.body, 0, lt)
        elif which == 1:
            struct.pack_into(e + "I", blk.body, 4, pick(c >> 2, 4, 65535))
        else:
            blk.body[8:] = _options(c >> 2)


def _options(c: int) -> bytes:
    """pcapng options: if_tsresol (9) and if_tsoffset (14) with odd values, bad lengths, end of options."""
    code = (9, 14, 2, 0, 12, 0xFFFF)[c % 6]
    c //= 6
    if code == 9:
        val = bytes(((0, 3, 6, 9, 19, 63, 0x80, 0x80 | 10, 0x80 | 63, 0xFF)[c % 10],))
    elif code == 14:
        val = struct.pack("<q", (0, 1, -1, 1 << 62, -(1 << 62))[c % 5])
    else:
        val = bytes(c % 7)
    ln = len(val) if (c >> 4) % 4 else (c >> 6) & 0xFFFF
    body = struct.pack("<HH", code, ln) + val
    body += b"\0" * (-len(body) % 4)
    return body + b"\0\0\0\0"


def _pcapng_structure(m: Model, a: int, b: int, c: int) -> None:
    if m.kind != "pcapng":
        if c % 2 and len(m.header) >= 24:            # pcap: ns <-> µs magic, same byte order
            m.header[:4] = {b"\xd4\xc3\xb2\xa1": b"\x4d\x3c\xb2\xa1", b"\x4d\x3c\xb2\xa1": b"\xd4\xc3\xb2\xa1",
                            b"\xa1\xb2\xc3\xd4": b"\xa1\xb2\x3c\x4d", b"\xa1\xb2\x3c\x4d": b"\xa1\xb2\xc3\xd4"
                            }.get(bytes(m.header[:4]), bytes(m.header[:4]))
        return
    e = m.endian
    what = b % 6
    at = a % (len(m.items) + 1)
    if what == 0:               # a block length that lies
        blocks = [x for x in m.items if isinstance(x, Block)]
        if blocks:
            blk = blocks[a % len(blocks)]
            n = 12 + len(blk.body) + (-len(blk.body) % 4)
            if c % 2:
                blk.length = pick(c >> 1, 4, n)
            else:
                blk.trailer = pick(c >> 1, 4, n)
    elif what == 1:             # another interface
        m.items.insert(at, Block(1, bytearray(struct.pack(e + "HHI", LINKTYPES[c % len(LINKTYPES)] & 0xFFFF, 0,
                                                          pick(c >> 4, 4, 262144))) + _options(c >> 8)))
    elif what == 2:             # a new section: interfaces numbered again from 0
        m.items.insert(at, Block(PCAPNG_SHB, bytearray(b"\x4d\x3c\x2b\x1a" if e == "<" else b"\x1a\x2b\x3c\x4d")
                                 + struct.pack(e + "HHq", 1, 0, -1)))
    elif what == 3:             # an unknown / custom / name-resolution / statistics block
        btype = (0xDEADBEEF, 4, 5, 0x0BAD, 0x40000BAD, 10, 0x80000000)[c % 7]
        m.items.insert(at, Block(btype, bytearray(bytes(((c >> 3) + i) & 0xFF for i in range((c >> 3) % 64)))))
    elif what == 4:             # a packet record turned into a simple / obsolete packet block
        recs = m.records()
        if recs:
            recs[a % len(recs)].kind = (3, 2, 6)[c % 3]
    else:                       # record options (epb_flags, epb_hash, comments, garbage)
        recs = m.records()
        if recs:
            recs[a % len(recs)].opts = _options(c)


def compress(data: bytes, how: int, cut: int) -> bytes:
    """`data` gzip/bz2/xz-wrapped (how 1..3; 0 leaves it), then cut at `cut` % of its length (>= 100: whole)."""
    if how == 0:
        return data
    z = (gzip.compress(data, 1, mtime=0), bz2.compress(data, 1), lzma.compress(data, preset=0))[(how - 1) % 3]
    if cut < 100:
        z = z[:len(z) * cut // 100]
    return z
