"""ICMP errors that quote a TCP header: the side table beside the TCP batches.

Owns the table's columns (`ICMP_COLUMNS`), the decoding of one ICMP/ICMPv6 error from its outer IP header
(`parse_error`, the fast reader's; the dpkt and tshark engines decode the same facts their own way and
tests hold the three equal), the names of types and codes, and the errno Linux's connect() reports for
each (`linux_errno`). Must not: decide states or tie an error to a connection (tcpfsm/path/icmp.py
does), or touch the TCP hot path: the decoders only look at records they already classified as ICMP.

What is an error row: ICMPv4 destination unreachable (3), time exceeded (11) and parameter problem (12);
ICMPv6 destination unreachable (1), packet too big (2), time exceeded (3) and parameter problem (4);
each only when it quotes an IP header (IPv4, or IPv6 with TCP right after the fixed header) whose
protocol is TCP and at least the first 8 TCP bytes (ports and sequence number: what RFC 792 promises).
The outer packet must itself be unencapsulated and unfragmented (an error inside a tunnel is counted as
an "icmp" skip like any other ICMP record, not tied). `sender` is the outer source: the router (or host)
that sent the error; `ttl` the outer TTL / hop limit (how far that router is from the capture point).
"""
from __future__ import annotations

import struct

import numpy as np

ICMP_COLUMNS: dict[str, np.dtype] = {
    "index": np.dtype(np.int64),     # 1-based record number of the ICMP packet
    "ts": np.dtype(np.int64),        # ns since the epoch
    "family": np.dtype(np.uint8),    # 4 (ICMP) or 6 (ICMPv6)
    "sender": np.dtype("V16"),       # outer source: the router that sent it (IPv4 as ::ffff:a.b.c.d)
    "ttl": np.dtype(np.uint8),       # outer TTL / hop limit as seen
    "type": np.dtype(np.uint8),
    "code": np.dtype(np.uint8),
    "mtu": np.dtype(np.uint32),      # next-hop MTU of "fragmentation needed" / "packet too big", else 0
    "q_src": np.dtype("V16"),        # the quoted (offending) packet's addresses, ports and sequence number
    "q_dst": np.dtype("V16"),
    "q_sport": np.dtype(np.uint16),
    "q_dport": np.dtype(np.uint16),
    "q_seq": np.dtype(np.uint32),
}
ROW_COLUMNS = tuple(k for k in ICMP_COLUMNS if k not in ("index", "ts"))   # what a parser's row tuple holds

ERROR_TYPES = {4: frozenset((3, 11, 12)), 6: frozenset((1, 2, 3, 4))}
_MAPPED = b"\x00" * 10 + b"\xff\xff"
_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from


def parse_error(data, l3: int, et: int):
    """The ICMP error at the IP header data[l3:] (ethertype `et`) as a row tuple in ROW_COLUMNS order, or
    None when it is not an error quoting a TCP header (see the module doc)."""
    n = len(data)
    if et == 0x0800:
        if n < l3 + 20 or data[l3] >> 4 != 4:
            return None
        ihl = (data[l3] & 15) * 4
        if ihl < 20 or data[l3 + 9] != 1 or _u16(data, l3 + 6)[0] & 0x3FFF or n < l3 + ihl + 8:
            return None
        t = l3 + ihl
        typ, code = data[t], data[t + 1]
        if typ not in ERROR_TYPES[4]:
            return None
        mtu = _u16(data, t + 6)[0] if typ == 3 and code == 4 else 0
        q = t + 8
        if n < q + 20 or data[q] >> 4 != 4:
            return None
        qihl = (data[q] & 15) * 4
        if qihl < 20 or data[q + 9] != 6 or _u16(data, q + 6)[0] & 0x1FFF or n < q + qihl + 8:
            return None
        sender = _MAPPED + bytes(data[l3 + 12:l3 + 16])
        ttl = data[l3 + 8]
        qs, qd = _MAPPED + bytes(data[q + 12:q + 16]), _MAPPED + bytes(data[q + 16:q + 20])
        p = q + qihl
        fam = 4
    elif et == 0x86DD:
        if n < l3 + 48 or data[l3] >> 4 != 6 or data[l3 + 6] != 58:
            return None
        t = l3 + 40
        typ, code = data[t], data[t + 1]
        if typ not in ERROR_TYPES[6]:
            return None
        mtu = _u32(data, t + 4)[0] if typ == 2 else 0
        q = t + 8
        if n < q + 48 or data[q] >> 4 != 6 or data[q + 6] != 6:
            return None
        sender = bytes(data[l3 + 8:l3 + 24])
        ttl = data[l3 + 7]
        qs, qd = bytes(data[q + 8:q + 24]), bytes(data[q + 24:q + 40])
        p = q + 40
        fam = 6
    else:
        return None
    return (fam, sender, ttl, typ, code, mtu, qs, qd, _u16(data, p)[0], _u16(data, p + 2)[0], _u32(data, p + 4)[0])


class IcmpErrors:
    """The side table a decoder fills while it reads: rows in capture order, bounded (`MAX_ROWS`; more are
    counted in `dropped`)."""

    MAX_ROWS = 1_000_000

    def __init__(self):
        self.rows: list[tuple] = []
        self.dropped = 0

    def add(self, index: int, ts: int, row: tuple) -> None:
        if len(self.rows) >= self.MAX_ROWS:
            self.dropped += 1
            return
        self.rows.append((index, ts) + tuple(row))

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> dict[str, np.ndarray]:
        """The table as numpy columns (ICMP_COLUMNS), in capture order."""
        if not self.rows:
            return {k: np.zeros(0, dt) for k, dt in ICMP_COLUMNS.items()}
        cols = list(zip(*sorted(self.rows, key=lambda r: r[0])))
        out = {}
        for j, (k, dt) in enumerate(ICMP_COLUMNS.items()):
            out[k] = np.frombuffer(b"".join(cols[j]), "V16").copy() if dt == np.dtype("V16") else \
                np.array(cols[j], np.int64).astype(dt)
        return out


# -- names and the kernel's reading ---------------------------------------------------------------------
_NAMES4 = {
    (3, 0): "net_unreachable", (3, 1): "host_unreachable", (3, 2): "protocol_unreachable",
    (3, 3): "port_unreachable", (3, 4): "fragmentation_needed", (3, 5): "source_route_failed",
    (3, 6): "net_unknown", (3, 7): "host_unknown", (3, 8): "host_isolated", (3, 9): "net_prohibited",
    (3, 10): "host_prohibited", (3, 11): "net_unreachable_tos", (3, 12): "host_unreachable_tos",
    (3, 13): "admin_prohibited", (3, 14): "precedence_violation", (3, 15): "precedence_cutoff",
    (11, 0): "ttl_exceeded", (11, 1): "reassembly_time_exceeded",
}
_NAMES6 = {
    (1, 0): "no_route", (1, 1): "admin_prohibited", (1, 2): "beyond_scope", (1, 3): "address_unreachable",
    (1, 4): "port_unreachable", (1, 5): "source_policy_failed", (1, 6): "reject_route",
    (2, 0): "packet_too_big", (3, 0): "hop_limit_exceeded", (3, 1): "reassembly_time_exceeded",
}


def error_name(family: int, typ: int, code: int) -> str:
    """A short stable name for an error's type and code ("port_unreachable", "ttl_exceeded", ...)."""
    got = (_NAMES4 if family == 4 else _NAMES6).get((typ, code))
    if got:
        return got
    if (family == 4 and typ == 12) or (family == 6 and typ == 4):
        return "parameter_problem"
    return f"icmp{'v6' if family == 6 else ''}_{typ}_{code}"


# Linux's errno for each error, as net/ipv4/icmp.c's icmp_err_convert and net/ipv6/icmp.c's
# icmpv6_err_convert give it (time exceeded: EHOSTUNREACH; parameter problem: EPROTO).
_ERRNO4 = ("ENETUNREACH", "EHOSTUNREACH", "ENOPROTOOPT", "ECONNREFUSED", "EMSGSIZE", "EOPNOTSUPP", "ENETUNREACH",
           "EHOSTDOWN", "ENONET", "ENETUNREACH", "EHOSTUNREACH", "ENETUNREACH", "EHOSTUNREACH", "EHOSTUNREACH",
           "EHOSTUNREACH", "EHOSTUNREACH")
_ERRNO6 = ("ENETUNREACH", "EACCES", "EHOSTUNREACH", "EHOSTUNREACH", "ECONNREFUSED", "EACCES", "EACCES")


def linux_errno(family: int, typ: int, code: int) -> str | None:
    """The errno a Linux socket gets from this error (connect() fails with it in SYN_SENT), or None when
    the kernel ignores it for TCP errors or uses it for path MTU only (fragmentation needed, packet too big)."""
    if family == 4:
        if typ == 3:
            return None if code == 4 or code >= len(_ERRNO4) else _ERRNO4[code]
        return "EHOSTUNREACH" if typ == 11 else "EPROTO" if typ == 12 else None
    if typ == 1:
        return _ERRNO6[code] if code < len(_ERRNO6) else "EPROTO"
    return "EHOSTUNREACH" if typ == 3 else "EPROTO" if typ == 4 else None


def aborts_connect(family: int, typ: int, code: int) -> bool:
    """Linux ends a SYN_SENT socket on this error (tcp_v4_err / tcp_v6_err: every error that converts to an
    errno aborts the connect; only hard errors abort an established connection, RFC 1122 4.2.3.9)."""
    return linux_errno(family, typ, code) is not None
