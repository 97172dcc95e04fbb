"""Per-segment path analysis over the decoded batches: the wrapper around the sequence-analysis kernel.

Owns the dense ids of 4-tuples (the kernel's key table, sized here), the capacity of the kernel's state
arrays and of its per-batch outputs, the rows kept for the `segments` view, and the RTT samples (arrays the
kernel appends to); and the wrappers of the kernel's per-flow helpers for tcpfsm/path/flows.py (`dense_ids`,
`sum_by_flow`, `rtt_by_flow`). `SequenceAnalysis.feed_batch` takes every batch in capture order (the order
Wireshark numbers frames in: its flags are defined on that order, not on the tracker's causal one);
`conv_state()` hands out the state of every conversation (a 4-tuple, split where a SYN brings a new ISN).
Must not: decide states or know the tracker's internals; tcpfsm/path/flows.py ties conversations to the
tracker's flows through their public identity (4-tuple, first packet).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._kernels import load as _load
from ..capture.batch import Batch

_k = _load("tcpfsm.path._seqan")
ANALYSIS_NAMES: tuple[str, ...] = _k.ANALYSIS_NAMES[:14]     # the public ones (reused_ports is internal)
DS = {name: j for j, name in enumerate(_k.DS_COLUMNS)}          # column of the per-direction state
CS = {name: j for j, name in enumerate(_k.CS_COLUMNS)}          # column of the per-conversation state
KEY_WORDS = 9                   # a flow key's 36 bytes (tcpfsm.capture.keys) as the kernel reads them: 32-bit words


def sum_by_flow(ds: np.ndarray, rows: np.ndarray, flow: np.ndarray, cols: list[int], flows: int) -> np.ndarray:
    """Per flow (`flow`: each row's, in [0, flows)), the sums of the state rows `rows` of `ds` (SequenceAnalysis's
    per-direction state) in the columns `cols`: int64, a row per column, by the kernel's one pass."""
    out = np.zeros((len(cols), flows), np.int64)
    _k.sum_by_flow(np.ascontiguousarray(ds, np.int64), np.ascontiguousarray(rows, np.int64),
                   np.ascontiguousarray(flow, np.int64), np.asarray(cols, np.int64), out)
    return out


SORT_RUN = 32                   # a flow's RTT samples up to this many are sorted by the kernel, longer runs by numpy


def rtt_by_flow(conv: np.ndarray, rtt: np.ndarray, packet: np.ndarray, conv_flow: np.ndarray,
                flows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The RTT samples (each one's conversation, RTT ns and acknowledging packet, as `rtt_samples` gives them)
    per flow (`conv_flow`: each conversation's, in [0, flows), -1 none: its samples are left out), in time
    order (packet order, as they were fed; else ordered first): how many (int64), the sum of the absolute
    differences of consecutive ones (float64, added in time order), and the samples sorted by (flow, value).
    By the kernel's passes over the samples (a counting sort by flow), numpy sorting only the runs of flows
    with more than SORT_RUN samples."""
    count = np.zeros(flows, np.int64)
    total = np.zeros(flows, np.float64)
    out = np.empty(len(rtt), np.int64)
    cols = [np.ascontiguousarray(x, np.int64) for x in (conv, rtt, packet)]
    rest = (np.ascontiguousarray(conv_flow, np.int64), count, total, np.empty(flows, np.int64), out, SORT_RUN)
    if not _k.rtt_by_flow(*cols, *rest):
        o = np.argsort(cols[2], kind="stable")
        _k.rtt_by_flow(*(x[o] for x in cols), *rest)
    ends = np.cumsum(count)
    out = out[:int(ends[-1]) if flows else 0]
    long = np.flatnonzero(count > SORT_RUN)
    for n, end in zip(count[long].tolist(), ends[long].tolist()):
        out[end - n:end].sort()
    return count, total, out


def dense_ids(keys: np.ndarray) -> np.ndarray:
    """Each 36-byte key (a V36 array) numbered in order of first appearance, by a key table of its own (the
    kernel's intern_keys)."""
    n = len(keys)
    out = np.empty(n, np.int64)
    if n:
        _k.intern_keys(_words(keys), np.full(1 << (2 * n).bit_length(), -1, np.int64),
                       np.empty((n, KEY_WORDS), np.uint32), 0, True, -1, out)
    return out


def _words(keys: np.ndarray) -> np.ndarray:
    """Flow keys (a V36 array) as the kernel reads them: a row of 9 32-bit words each."""
    return np.ascontiguousarray(keys).view(np.uint32).reshape(len(keys), KEY_WORDS)


def analysis_names(bits: int) -> list[str]:
    """Analysis bits -> tcp.analysis names, in Wireshark's field order."""
    return [name for j, name in enumerate(ANALYSIS_NAMES) if bits >> j & 1]


@dataclass(slots=True)
class Rows:
    """The segments kept for the `segments` view, in capture order (parallel arrays)."""

    index: np.ndarray
    ts: np.ndarray
    conv: np.ndarray
    lo: np.ndarray
    flags: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    win: np.ndarray
    plen: np.ndarray
    bits: np.ndarray
    dupnum: np.ndarray


class SequenceAnalysis:
    """Feeds batches to the kernel, keeping its state between them."""

    def __init__(self, keep_rows: bool = False, max_convs: int | None = None):
        """`max_convs`: conversations analysed at most (memory bound, like the tracker's cap on connections);
        segments of further ones are counted in `skipped` and carry no analysis."""
        self.keep_rows = keep_rows
        self.max_convs = max_convs if max_convs is not None else 1 << 62
        self.skipped = 0
        # the 4-tuples' dense ids: the kernel's hash table over the keys stored so far (row = id), not a dict
        # of bytes (~120 bytes a key against 52)
        self._table = np.full(1 << 12, -1, np.int64)
        self._stored = np.zeros((1024, KEY_WORDS), np.uint32)
        self.nkeys = 0
        self._overflow = -1                            # the shared id of keys seen after the cap (see feed_batch)
        self.conv_of_key = np.full(1024, -1, np.int64)
        first = min(1024, self.max_convs)
        self.ds = np.zeros((2 * first, len(DS)), np.int64)
        self.cs = np.zeros((first, len(CS)), np.int64)
        self.nconv = 0
        # the RTT samples, written by the kernel (conversation, acker is the lower side, ns, packet): room for
        # `len` samples, `_held[0]` of them in use, grown by doubling (one copy per growth, none per batch)
        self._rtt = (np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.int64), np.empty(0, np.int64))
        self._held = np.zeros(1, np.int64)
        self._scratch: tuple[np.ndarray, ...] = ()      # the per-row outputs, reused (see _outputs)
        self._rows: list[tuple] = []
        self.segments = 0
        self.ttl_max = np.full(2 * first, -1, np.int16)   # per ds row: the highest TTL seen (hops: path/flows.py)

    def _reserve_keys(self, keys: int) -> None:
        """Room for `keys` keys in the table (at most half full) and their rows."""
        if keys > len(self._stored):
            grown = np.zeros((max(keys, 2 * len(self._stored)), KEY_WORDS), np.uint32)
            grown[:self.nkeys] = self._stored[:self.nkeys]
            self._stored = grown
        if 2 * keys > len(self._table):
            self._table = np.full(1 << (2 * keys).bit_length(), -1, np.int64)
            _k.intern_keys(self._stored[:self.nkeys], self._table, self._stored, 0, True, -1,
                           np.empty(self.nkeys, np.int64))

    def _reserve(self, keys: int, convs: int) -> None:
        if keys > len(self.conv_of_key):
            grown = np.full(max(keys, 2 * len(self.conv_of_key)), -1, np.int64)
            grown[:len(self.conv_of_key)] = self.conv_of_key
            self.conv_of_key = grown
        convs = min(convs, self.max_convs)
        if convs > len(self.cs):
            cap = min(max(convs, len(self.cs) * 3 // 2), self.max_convs)
            cs = np.zeros((cap, len(CS)), np.int64)
            cs[:self.nconv] = self.cs[:self.nconv]
            ds = np.zeros((2 * cap, len(DS)), np.int64)
            ds[:2 * self.nconv] = self.ds[:2 * self.nconv]
            ttl = np.full(2 * cap, -1, np.int16)
            ttl[:2 * self.nconv] = self.ttl_max[:2 * self.nconv]
            self.cs, self.ds, self.ttl_max = cs, ds, ttl

    def _outputs(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Room for the kernel's per-row outputs of `n` rows (key id, conversation, analysis bits, duplicate-ACK
        number) and for `n` more RTT samples. The outputs are the previous batch's arrays again unless the rows
        are kept (a fresh array of this size costs its pages' zeroing, a third of the kernel's own time)."""
        held = int(self._held[0])
        if held + n > len(self._rtt[0]):
            cap = max(held + n, 2 * len(self._rtt[0]))
            grown = []
            for a in self._rtt:
                g = np.empty(cap, a.dtype)
                g[:held] = a[:held]
                grown.append(g)
            self._rtt = tuple(grown)
        if self.keep_rows or len(self._scratch) == 0 or len(self._scratch[0]) < n:
            self._scratch = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.uint32),
                             np.empty(n, np.uint32))
        key, conv, bits, dupnum = self._scratch
        return key[:n], conv[:n], bits[:n], dupnum[:n]

    def feed_batch(self, batch: Batch) -> None:
        c = batch.cols
        n = len(c["index"])
        if not n:
            return
        karr, lo = batch.flow_keys()           # (made once per batch: the tracker reads them too)
        # Once the cap on conversations is reached no new key can get one, so an unseen key is not given an
        # id of its own (a spoofed flood's millions of 4-tuples would make the table grow without bound): it
        # shares the one overflow id (past the keys stored), which never holds a conversation, and its rows
        # count as skipped.
        full = self.nconv >= self.max_convs
        if not full:
            self._reserve_keys(self.nkeys + n)
        elif self._overflow < 0:
            self._overflow = self.nkeys
        key, conv, bits, dupnum = self._outputs(n)
        self.nkeys = _k.intern_keys(_words(karr), self._table, self._stored, self.nkeys,
                                    not full, self._overflow, key)
        self._reserve(self.nkeys + 1, self.nconv + n)
        ttl = c.get("ttl")
        u8 = np.uint8
        self.nconv = _k.analyze(
            key, lo.view(u8), np.ascontiguousarray(c["index"], np.int64), np.ascontiguousarray(c["ts"], np.int64),
            np.ascontiguousarray(c["flags"], np.uint16), np.ascontiguousarray(c["seq"], np.uint32),
            np.ascontiguousarray(c["ack"], np.uint32), np.ascontiguousarray(c["win"], np.uint16),
            np.ascontiguousarray(c["plen"], np.uint32), np.ascontiguousarray(c["mss"], np.uint16),
            np.ascontiguousarray(c["wscale"], np.int8), np.ascontiguousarray(c["sack_ok"]).view(u8),
            np.ascontiguousarray(c["has_ts"]).view(u8),
            np.zeros(0, u8) if ttl is None else np.ascontiguousarray(ttl, u8),
            self.conv_of_key, self.ds, self.cs, self.ttl_max, self.nconv, self.max_convs, conv, bits, dupnum,
            *self._rtt, self._held)
        self.segments += n
        if self.nconv >= self.max_convs:
            self.skipped += int((conv < 0).sum())
        if self.keep_rows:
            self._rows.append((c["index"], c["ts"], conv, lo, c["flags"], c["seq"], c["ack"], c["win"], c["plen"],
                               bits, dupnum))

    def rows(self) -> Rows:
        """Every segment fed (needs keep_rows=True), in capture order."""
        if not self._rows:
            z = np.zeros(0, np.int64)
            return Rows(*(z,) * 11)
        cols = list(zip(*self._rows))
        return Rows(*(np.concatenate(x) for x in cols))

    def take_rows(self) -> Rows:
        """The segments fed since the last call (needs keep_rows=True), then forgets them: a caller that
        reduces them batch by batch keeps memory bounded by a batch."""
        out = self.rows()
        self._rows = []
        return out

    def rtt_samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(conversation, acker is the lower side, RTT ns, acknowledging packet) of every Karn sample, in capture
        order: views of the arrays the kernel writes (callers only read; samples fed later are not in them)."""
        held = int(self._held[0])
        conv, lo, ns, packet = self._rtt
        return conv[:held], lo[:held].view(bool), ns[:held], packet[:held]

    def key_ids(self, keys: np.ndarray) -> np.ndarray:
        """The dense id of each 36-byte flow key (a V36 array, tcpfsm.capture.keys), -1 for a key never analysed
        (not seen, or seen only beyond the cap on conversations)."""
        out = np.empty(len(keys), np.int64)
        if len(keys):
            _k.intern_keys(_words(keys), self._table, self._stored, self.nkeys, False, -1, out)
        return out

    def keys(self) -> np.ndarray:
        """The 36-byte flow key of each dense id (a V36 array; the overflow id has none)."""
        return self._stored[:self.nkeys].view("V36").ravel()

    def conv_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The kernel's per-conversation (cs) and per-conversation-direction (ds) rows in use."""
        return self.cs[:self.nconv], self.ds[:2 * self.nconv]
