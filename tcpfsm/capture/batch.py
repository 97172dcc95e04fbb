"""Columnar packet batches: the one interface between capture decoders and the tracker.

This module owns the shape of a decoded TCP segment batch and the counters of
what a decoder skipped. It must not read files or know about flows or states:
any decoder (dpkt today, numpy or tshark later) fills these arrays, and the
tracker only ever sees them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# TCP flag bits as they sit in the header's flags byte (plus NS as bit 8).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100

# Column name -> numpy dtype. Addresses are 16 raw bytes: IPv6 as is, IPv4 as
# the IPv4-mapped IPv6 address ::ffff:a.b.c.d, so one column holds both.
COLUMNS: dict[str, np.dtype] = {
    "index": np.dtype(np.int64),    # 1-based record number in the capture
    "ts": np.dtype(np.int64),       # nanoseconds since the epoch
    "iface": np.dtype(np.uint16),   # pcapng interface id (0 for pcap)
    "family": np.dtype(np.uint8),   # 4 or 6
    "src": np.dtype("V16"),
    "dst": np.dtype("V16"),
    "sport": np.dtype(np.uint16),
    "dport": np.dtype(np.uint16),
    "flags": np.dtype(np.uint16),   # FIN..CWR bits, NS as 0x100
    "seq": np.dtype(np.uint32),
    "ack": np.dtype(np.uint32),
    "win": np.dtype(np.uint16),     # raw header window, unscaled
    "plen": np.dtype(np.uint32),    # TCP payload length from the IP length (not the captured length)
    "mss": np.dtype(np.uint16),     # 0 = option absent
    "wscale": np.dtype(np.int8),    # -1 = option absent
    "sack_ok": np.dtype(np.bool_),
    "has_ts": np.dtype(np.bool_),
    "tsval": np.dtype(np.uint32),
    "tsecr": np.dtype(np.uint32),
    "ip_len": np.dtype(np.uint32),  # IP packet length on the wire (header + payload)
}

# Columns every Batch also carries, added after COLUMNS was pinned by tests that compare whole rows
# (tests/test_capture.py builds its expected rows from COLUMNS); fold them into COLUMNS once those
# tests list them. Decoders must fill them (Batch.empty / zeros are the right default).
#
# tunnel: 0 = the segment was not encapsulated; k > 0 = it was carried inside the tunnel(s)
#   described by CaptureInfo.tunnels[k] (e.g. "vxlan 192.0.2.1:51234->192.0.2.2:4789 vni 42";
#   nested encapsulations outermost first, joined by " / "). The addresses/ports/flags in the
#   other columns are always those of the innermost (tracked) TCP/IP packet. Descriptions are per
#   direction as seen on the wire, so the two directions of one inner connection usually map to
#   two entries (the union per flow is the connection's `tunnel_parents`).
#
# csum: the TCP checksum (pseudo-header + TCP header + payload, ones' complement, RFC 9293 3.1):
#   CSUM_BAD (0) = computed and wrong; CSUM_GOOD (1) = computed and right; CSUM_UNVERIFIABLE (2) = not
#   computed because the segment is not all there: the record was cut by the snaplen before the end
#   of the segment (as the IP length gives it), or the packet is a first IP fragment (MF set; tracked
#   without reassembly). A segment inside a tunnel is verified like any other, against its innermost
#   IP header (the pseudo-header is end to end; encapsulation does not change it). A capture taken on
#   the sending host with checksum offload shows every outgoing segment as CSUM_BAD (the NIC fills the
#   field in later; the capture holds the partial pseudo-header sum or zero). Wireshark's numbering
#   (tcp.checksum.status: 0 bad, 1 good, 2 unverified).
EXTRA_COLUMNS: dict[str, np.dtype] = {
    "tunnel": np.dtype(np.uint16),
    "csum": np.dtype(np.uint8),
    "ttl": np.dtype(np.uint8),
    "ipid": np.dtype(np.uint16),
}
#
# ttl: the IPv4 TTL / IPv6 hop limit of the innermost IP header (the tracked packet's), as seen at the
#   capture point (what `ip.ttl` / `ipv6.hlim` show); path/flows.py turns it into hops.
#
# ipid: the innermost IPv4 header's Identification (`ip.id`); 0 for IPv6 (no such field outside a fragment
#   header) -- and 0 is also what Linux puts on the replies it sends without a socket, so 0 means "no
#   evidence". Linux numbers a connected socket's DF packets from a per-connection counter, one step per
#   packet: a gap between two packets of one endpoint counts the packets it sent that the capture point
#   never saw (tcpfsm/fsm/machine.py uses it for a FIN lost before the tap).
CSUM_BAD, CSUM_GOOD, CSUM_UNVERIFIABLE = 0, 1, 2
CSUM_NAMES = ("bad", "good", "unverifiable")
ALL_COLUMNS: dict[str, np.dtype] = {**COLUMNS, **EXTRA_COLUMNS}


@dataclass(slots=True)
class Batch:
    """Parallel arrays, one row per TCP segment, in capture order."""

    cols: dict[str, np.ndarray]
    _keys: tuple | None = None        # `flow_keys`, once made
    # what a later stage derives from these rows alone and may have made ahead, in another thread (the
    # tracker's grouping: tcpfsm/track/flowtable.py FlowTable.prepare); None until something is
    derived: dict | None = None

    def flow_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows' flow keys and which side sent each (tcpfsm.capture.keys.flow_key_array), made once per
        batch: the tracker and the path analysis both read them."""
        if self._keys is None:
            from .keys import flow_key_array
            self._keys = flow_key_array(self.cols)
        return self._keys

    def __len__(self) -> int:
        return len(self.cols["index"])

    def __getattr__(self, name: str) -> np.ndarray:  # batch.ts, batch.flags, ...
        try:
            return self.cols[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def empty(cls, n: int = 0) -> "Batch":
        return cls({k: np.zeros(n, dtype=dt) for k, dt in ALL_COLUMNS.items()})


@dataclass(slots=True)
class CaptureInfo:
    """Facts about a capture that every summary shows."""

    path: str
    format: str = ""                       # "pcap", "pcapng"
    compressed: bool = False
    linktypes: list[int] = field(default_factory=list)
    ts_resolution: list[str] = field(default_factory=list)   # e.g. ["us"], ["ns", "us"]
    records: int = 0                       # records read from the file
    tcp_segments: int = 0                  # rows handed to the tracker
    skipped: Counter = field(default_factory=Counter)        # reason -> count
    first_ts: int | None = None            # ns
    last_ts: int | None = None             # ns
    truncated: bool = False                # file ended in the middle of a record/block
    bytes_read: int = field(default=0, compare=False)   # how far into the input the reader is (progress)
    warnings: list[str] = field(default_factory=list)
    # Tunnel table for the `tunnel` column: tunnels[0] is always "" (not encapsulated), every
    # other entry a distinct description, numbered in order of first appearance in the capture.
    tunnels: list[str] = field(default_factory=lambda: [""])
    # TCP checksums of the rows handed to the tracker (the `csum` column): "good", "bad",
    # "unverifiable" -> count (keys only when non-zero).
    checksums: Counter = field(default_factory=Counter)


def count_checksums(info: CaptureInfo, csum: np.ndarray) -> None:
    """Add a batch's `csum` column to `info.checksums` (every decoder calls this once per batch)."""
    n = len(csum)
    if n:
        bad = int(np.count_nonzero(csum == CSUM_BAD))          # (two vector compares, not a bincount's
        unver = int(np.count_nonzero(csum == CSUM_UNVERIFIABLE))  # conversion to intp and scalar count)
        for name, k in zip(CSUM_NAMES, (bad, n - bad - unver, unver)):
            if k:
                info.checksums[name] += k


class CaptureError(Exception):
    """The input cannot be read as a capture at all (one-line message for the user)."""
