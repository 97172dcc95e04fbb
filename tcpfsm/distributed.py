"""Many captures analysed on a Dask cluster, partitioned by connection, with the answers of one process.

Owns the distributed run: `analyze(paths, workers=N | scheduler="tcp://HOST:PORT")` and its steps, the
tasks they submit and the merge of their results. It must not decide states, findings or piles: every
connection goes through the same FlowTable, its findings through the same Aggregator (in its partition), the
merged summaries and transitions through the same PileCounter and Analysis, as in `tcpfsm.api.analyze`.
Dask is imported only here, only when used (the optional extra `tcpfsm[dask]`).

1. Decode, one task per file (in parallel): the file's TCP segments, each sent to partition
   `hash(connection 4-tuple, both directions alike) % P` (a URL, proto://..., is first copied to the worker
   through fsspec), kept in the worker's memory or, with a work
   directory, written there as .npz column files (bounded memory on the worker: flushed every
   FLUSH_ROWS rows). The task returns the file's facts (records, skips, first/last timestamps, tunnels,
   interfaces) to the driver.
2. Track, one task per partition: the driver orders the files by first timestamp (tcpfsm.capture.multi's
   rule) and numbers packets, interfaces and tunnels globally; each partition task reads its pieces of every
   file in that order (merged by timestamp where files overlap), so it holds *every* segment of each of its
   connections, in the order one process would see them. It runs a FlowTable over them, timers advanced
   after every batch and settled at the capture's end (the end of the last file, or --end), and keeps its
   flows on the worker (with a work directory: pickled there, read back by the numbering and judging
   tasks, so that a worker holds one partition's connections at a time, not all of its partitions' across
   the two barriers below), sorted by key (first timestamp, first packet): the order in which one process
   creates, and so numbers, connections. P: 2 per worker, more for big inputs (a partition per
   PARTITION_BYTES of capture, up to 8 per worker), or `partitions`.
   Why timers across file boundaries behave as in one file: a connection's timers only ever fire on that
   connection's own clock -- before its next segment, or when the table advances to a time -- and the
   partition sees its segments in global time order, with the global end; nothing in the table resets at a
   file boundary, because the table never sees one.
3. Number: a flow's global id is its rank among every partition's keys (first timestamp, first packet),
   found by a sample sort: the partitions offer evenly spaced samples of their keys, the driver cuts the key
   space into P ranges of about equal size, every partition sends each range task its keys in that range
   (16 bytes a connection, once), the range task ranks them and sends each partition its ranks back, and a
   partition's ids are its ranks plus the sizes of the ranges before (`ids_from`). One task per partition
   then applies them. TIME_WAIT reuse links stay in
   the partition (same 4-tuple). The task indexes its flows for the aggregate findings
   (`Aggregator.index_flows`: SYN floods per service and second, scan targets per source, the newest
   connection per (client, service)) and hands the driver that summary, no connection.
4. Judge, one task per partition: the driver merges the summaries (`Aggregator.merge`: associative and
   commutative, tested; exact sums, unions, minima and first samples in id order) and sends back the merged
   newest-connection table, so the reconnect rule ("the same client opened a newer connection to the same
   service": those connections differ in their client port, so in their partition) is judged against the
   whole capture. The task computes every flow's findings (`Aggregator.judge_flows`, as `finish` does), its
   roll-ups, the counts of the summary (flows, states at the end, non-RFC transitions), every transition as
   the piles take it, per bucket of the host whose pile it moves (crc32 of the address, P buckets), sorted in
   `tcpfsm.detect.piles.ordered`'s order, and, when the output is json or jsonl,
   the flows' records / events rendered there, sorted in the document's order (in chunk files in the work
   directory, when there is one, until the driver streams them). The driver gathers the counts and roll-ups.
5. One task per host bucket feeds a PileCounter that bucket's transitions from every partition, merged in
   `ordered`'s order (`replay_piles`): a pile is one host's, so the buckets' counters hold disjoint hosts,
   each fed its transitions in one process's order, and the driver joins them (`PileCounter.absorb`). The
   driver merges the roll-ups and builds the Analysis from the merged aggregator (floods, scans, piles,
   roll-ups: the one implementation, hence one process's findings). With `render` and `fmt` json, jsonl or csv
   (`analyze --format json|jsonl|csv`), `write` streams the document: the partitions' rendered items merged by
   (flow id) or by (time, kind, flow id, position), a chunk per partition at a time. With `render` and no
   `fmt` (`netstat`, `states`, `timeline`), the flows stay on the workers and `DaskAnalysis.netstat_many`,
   `states` and `select` ask each partition for its sockets at the asked times (`sockets_of`), its state
   counts (`counts_of`) or the flows a filter chooses (`select_of`): a 4-tuple lives in one partition, so
   the rows join by concatenation, the counts by sums and the chosen flows by id. Otherwise (report, analyze
   as a table, brief or parquet, the Python API's default) the flows are gathered to the driver.

What the driver holds: the files' facts, the merged summaries (bounded like one process's Aggregator: per
service and second, per scanning source, MAX_NEWEST (client, service) pairs, roll-ups per (kind, host,
service)), the piles' live endpoints (those in a listed state at once, as a streamed run holds), and two
chunks per partition -- not the connections, unless they are gathered.

Exact where one process is exact, with these known differences: the cap on tracked connections is not
applied per partition (every connection is kept: --max-tracked does not apply); path health (per-segment
analysis) and Zeek's view are not computed (a warning says so); a capture whose timestamps step backwards
gets the backwards steps counted per file and across file boundaries (not through an overlap merge), and its
reordering window applies within each partition's batches; past the Aggregator's bounds (MAX_SINGLES sources
with one target, MAX_NEWEST pairs) one process forgets the oldest in its order and a partition in its own.
"""
from __future__ import annotations

import heapq
import os
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .api import Analysis, gc_paused      # gc_paused: the cyclic collector paused, as for one process's analysis

NS = 1_000_000_000
PARTITION_BYTES = 256 << 20   # capture bytes per connection partition, by default (see `analyze`)
SPILL_ABOVE = 256 << 20       # a local cluster given more than this uses a work directory of its own (tempdir)
FLUSH_ROWS = 1 << 21          # rows a decode task buffers before writing its partitions to the work directory
_FNV = np.uint64(0x100000001B3)
# a tracked connection in a worker's memory, as Dask should weigh it: without it Dask sees a partition as a few
# bytes and moves it between workers on a whim (pickling 100,000 connections to run a 1-second task elsewhere)
FLOW_BYTES = 4400


# -- partitioning -------------------------------------------------------------------------------------------
def partition_of(cols: dict, nparts: int) -> np.ndarray:
    """The partition of each row: a hash of the connection's 4-tuple (the same for both directions, from
    tcpfsm.capture.keys), stable across processes and machines."""
    from .capture.keys import flow_key_array
    n = len(cols["sport"])
    if nparts <= 1 or n == 0:
        return np.zeros(n, np.int64)
    key, _ = flow_key_array(cols)
    words = np.ascontiguousarray(key).view(np.uint8).reshape(n, 36).view("<u4")
    h = np.full(n, 0xCBF29CE484222325, np.uint64)
    with np.errstate(over="ignore"):
        for i in range(words.shape[1]):
            h = (h ^ words[:, i].astype(np.uint64)) * _FNV
    return ((h >> np.uint64(29)) % np.uint64(nparts)).astype(np.int64)


@dataclass
class FileFacts:
    """What the driver needs of one decoded file (small: no segments)."""
    path: str
    info: object                   # its CaptureInfo
    notes: dict
    rows: int = 0                  # segments handed on (after the checksum filter)
    dropped_bad: int = 0
    first_row_ts: int | None = None
    last_row_ts: int | None = None
    backwards_steps: int = 0
    largest_step: int = 0


def decode_file(path: str, nparts: int, engine: str = "fast", verify_checksums: bool = False,
                workdir: str | None = None, batch_size: int = 16384):
    """Task: decode one file -> (FileFacts, pieces), pieces[p] = partition p's segments of this file, as a
    list of column dicts (in memory) or of .npz paths (work directory), in file order."""
    from .api import open_engine
    from .capture.batch import ALL_COLUMNS
    from .fsm import get_profile
    from .track.flowtable import FlowTable
    causal = FlowTable(get_profile("linux")).causal_order     # how the tracker orders a batch (clock steps)
    if "://" in path:
        local = _fetch(path, workdir)
        try:
            facts, pieces = decode_file(local, nparts, engine, verify_checksums, workdir, batch_size)
        finally:
            os.remove(local)
        facts.path = facts.info.path = path
        return facts, pieces
    cap = open_engine(engine, path)
    facts = FileFacts(path=path, info=cap.info, notes={})
    pieces: list[list] = [[] for _ in range(nparts)]
    buf: list[list] = [[] for _ in range(nparts)]
    buffered = 0
    prev = None
    tag = uuid.uuid4().hex[:8]

    def flush():
        nonlocal buffered
        for p in range(nparts):
            if buf[p]:
                cols = {k: np.concatenate([b[k] for b in buf[p]]) for k in ALL_COLUMNS}
                if workdir is None:
                    pieces[p].append(cols)
                else:
                    name = os.path.join(workdir, f"p{p:05d}-{tag}-{len(pieces[p]):05d}.npz")
                    np.savez(name, **cols)
                    pieces[p].append(name)
                buf[p] = []
        buffered = 0

    for batch in cap.batches(batch_size):
        c = batch.cols
        if verify_checksums:
            good = c["csum"] != 0
            if not good.all():
                facts.dropped_bad += len(good) - int(good.sum())
                c = {k: v[good] for k, v in c.items()}
        n = len(c["ts"])
        if not n:
            continue
        ts = c["ts"]
        order = causal(ts)
        if order is not None:
            ts = ts[order]
        allts = ts if prev is None else np.concatenate([[prev], ts])
        back = allts[:-1] - allts[1:]
        nb = int((back > 0).sum())
        if nb:
            facts.backwards_steps += nb
            facts.largest_step = max(facts.largest_step, int(back.max()))
        prev = int(ts[-1])
        if facts.first_row_ts is None:
            facts.first_row_ts = int(ts[0])
        facts.last_row_ts = prev
        facts.rows += n
        part = partition_of(c, nparts)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(nparts + 1))
        for p in range(nparts):
            lo, hi = int(bounds[p]), int(bounds[p + 1])
            if hi > lo:
                rows = order[lo:hi]
                buf[p].append({k: v[rows] for k, v in c.items()})
        buffered += n
        if buffered >= FLUSH_ROWS and workdir is not None:
            flush()
    flush()
    facts.notes = dict(getattr(cap, "notes", {}) or {})
    return facts, pieces


def _fetch(url: str, workdir: str | None) -> str:
    """An object-store (or any fsspec) URL copied to a local temporary file on this worker: the decoder maps
    files. Decompression, if any, is the decoder's (by content), not fsspec's."""
    import shutil
    import tempfile
    try:
        import fsspec
    except ImportError:
        raise ValueError(f"{url}: reading URLs needs fsspec (pip install 'tcpfsm[dask]')") from None
    fd, local = tempfile.mkstemp(suffix=".cap", dir=workdir)
    try:
        with os.fdopen(fd, "wb") as out, fsspec.open(url, "rb") as src:
            shutil.copyfileobj(src, out, 4 << 20)
    except Exception as e:
        os.remove(local)
        from .capture.batch import CaptureError
        raise CaptureError(f"{url}: cannot fetch ({e})") from None
    return local


def facts_of(result):
    """Task: the small half of a decode result (what the driver gathers)."""
    return result[0]


def piece_of(result, p: int):
    """Task: partition p's pieces of one decoded file."""
    return result[1][p]


# -- tracking one partition ----------------------------------------------------------------------------------
@dataclass
class Plan:
    """The global numbering the driver decided, for the partition tasks."""
    bases: list[int]               # per file (reading order): global index of its first record
    iface_bases: list[int]
    tunnel_maps: list[list[int]]   # per file: local tunnel number -> global
    overlap: bool                  # some files overlap in time: merge each partition's rows by timestamp
    stop: int | None               # when the capture ended (timers settle there)


@dataclass
class Tracked:
    """One partition's connections, sorted by key (first timestamp, first packet): the order in which one
    process creates, and so numbers, them. Stays on the worker."""
    flows: list
    ts: np.ndarray                 # first_ts of each flow, in that order
    packet: np.ndarray             # first_packet of each
    reuse: list                    # per flow: the index here of the flow whose TIME_WAIT it reused, or -1
    spilled: str | None = None     # with a work directory: the flows are in this file, `flows` is empty

    def __sizeof__(self) -> int:   # what Dask weighs before moving it (sys.getsizeof sees a few pointers)
        return FLOW_BYTES * len(self.flows) + self.ts.nbytes * 3


def _spill(flows: list, workdir: str, name: str) -> str:
    """A partition's flows pickled to the work directory, between the stages that need every partition done
    (numbering waits for every partition's keys, judging for the merged index): the worker then holds one
    partition's connections at a time, not all of its partitions' (the file outlives a lost worker, so a
    retried task reads it again)."""
    import pickle
    path = os.path.join(workdir, f"{name}-{uuid.uuid4().hex[:8]}.flows")
    with gc_paused(), open(path, "wb") as f:
        pickle.dump(flows, f, protocol=5)
    return path


def _unspill(path: str) -> list:
    import pickle
    with gc_paused(), open(path, "rb") as f:
        return pickle.load(f)


def _load_piece(piece):
    if isinstance(piece, str):
        with np.load(piece) as z:
            return {k: z[k] for k in z.files}
    return piece


def _rows(pieces_by_file: list, plan: Plan):
    """A partition's segments, renumbered globally, in the order one process would feed them."""
    for k, pieces in enumerate(pieces_by_file):
        for piece in pieces:
            c = dict(_load_piece(piece))
            c["index"] = c["index"] + (plan.bases[k] - 1)
            if plan.iface_bases[k]:
                c["iface"] = (c["iface"].astype(np.int64) + plan.iface_bases[k]).astype(c["iface"].dtype)
            tun = c["tunnel"]
            if tun.any():
                c["tunnel"] = np.asarray(plan.tunnel_maps[k], np.int64)[tun].astype(tun.dtype)
            yield c


def track_partition(pieces_by_file: list, plan: Plan, profile, capture_point: str = "auto",
                    batch_size: int = 16384, workdir: str | None = None, name: str = "track") -> Tracked:
    """Task: every segment of one partition's connections through one FlowTable -> its Tracked (its flows
    spilled to `workdir` when given)."""
    with gc_paused():
        t = _track(pieces_by_file, plan, profile, capture_point, batch_size)
        if workdir is not None:
            t.spilled = _spill(t.flows, workdir, name)
            t.flows = []
        return t


def _track(pieces_by_file: list, plan: Plan, profile, capture_point: str, batch_size: int) -> Tracked:
    from .capture.batch import Batch
    from .track.flowtable import FlowTable
    table = FlowTable(profile, forget_finished=False, max_flows=None, capture_point=capture_point)
    chunks = _rows(pieces_by_file, plan)
    if plan.overlap:                              # files overlap: one stream merged by time (file order at ties)
        allc = list(chunks)
        if allc:
            cols = {k: np.concatenate([c[k] for c in allc]) for k in allc[0]}
            order = np.argsort(cols["ts"], kind="stable")
            chunks = iter([{k: v[order] for k, v in cols.items()}])
    for c in chunks:
        n = len(c["ts"])
        for lo in range(0, n, batch_size):
            table.feed_batch(Batch({k: v[lo:lo + batch_size] for k, v in c.items()}))
            table.advance(table.clock)
    table.finish(plan.stop)
    flows = sorted(table.flows, key=flow_key)
    at = {f.id: i for i, f in enumerate(flows)}
    reuse = [at.get(f.reuse_of, -1) if f.reuse_of is not None else -1 for f in flows]
    return Tracked(flows, np.array([f.first_ts for f in flows], np.int64),
                   np.array([f.first_packet for f in flows], np.int64), reuse)


def flow_key(f) -> tuple[int, int]:
    """The order in which one process creates (and numbers) connections: the monotonic time of the segment
    that created it, then its global packet index."""
    return (f.first_ts, f.first_packet)


def keys_of(t: Tracked) -> np.ndarray:
    """Task: a partition's keys, (n, 2) int64 in key order: all another partition needs to number its flows."""
    return np.stack([t.ts, t.packet], axis=1) if len(t.ts) else np.zeros((0, 2), np.int64)


# Numbering by key range (a sample sort): every key goes once to the task of its range and its rank comes back
# once, so no task holds more than a range's keys (sending every partition's keys to every numbering task
# would move P x N keys and hold all N in each task).
SAMPLE_KEYS = 256                  # keys a partition offers for choosing the ranges' splitters


def sample_of(t: Tracked) -> np.ndarray:
    """Task: up to SAMPLE_KEYS of a partition's keys, evenly spaced in key order."""
    keys = keys_of(t)
    if len(keys) <= SAMPLE_KEYS:
        return keys
    return keys[np.linspace(0, len(keys) - 1, SAMPLE_KEYS).astype(np.int64)]


def splitters_of(samples: list, ranges: int) -> np.ndarray:
    """`ranges - 1` keys cutting the merged samples into `ranges` parts of about equal size (in key order)."""
    keys = np.concatenate([np.zeros((0, 2), np.int64), *samples])
    if not len(keys) or ranges <= 1:
        return np.zeros((0, 2), np.int64)
    keys = keys[np.lexsort((keys[:, 1], keys[:, 0]))]
    at = (np.arange(1, ranges) * len(keys)) // ranges
    return keys[at]


def _cuts(keys: np.ndarray, splitters: np.ndarray) -> list[int]:
    """Where each splitter falls in sorted `keys` (the first key not smaller), with 0 and len(keys) around."""
    ts, pk = keys[:, 0], keys[:, 1]
    out = [0]
    for s_ts, s_pk in splitters.tolist():
        lo = int(np.searchsorted(ts, s_ts, "left"))
        hi = int(np.searchsorted(ts, s_ts, "right"))
        out.append(max(out[-1], lo + int(np.searchsorted(pk[lo:hi], s_pk, "left"))))
    out.append(len(keys))
    return out


def split_keys(t: Tracked, splitters: np.ndarray) -> list[np.ndarray]:
    """Task: a partition's sorted keys cut at the splitters -> one slice per range."""
    keys = keys_of(t)
    c = _cuts(keys, splitters)
    return [keys[c[r]:c[r + 1]] for r in range(len(c) - 1)]


def item_of(xs, i: int):
    """Task: xs[i] (one partition's slice of a range, one range's ranks of a partition, ...)."""
    return xs[i]


def rank_range(slices: list) -> tuple[list, int]:
    """Task: every partition's keys of one range -> (per partition, the rank of each of its keys within the
    range, 0-based; the range's number of keys). Keys are unique."""
    n = [len(x) for x in slices]
    total = sum(n)
    if not total:
        return [np.zeros(0, np.int64) for _ in slices], 0
    keys = np.concatenate(slices)
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    rank = np.empty(total, np.int64)
    rank[order] = np.arange(total)
    bounds = np.cumsum([0, *n])
    return [rank[bounds[p]:bounds[p + 1]] for p in range(len(slices))], total


def ids_from(ranks: list, offsets: list) -> np.ndarray:
    """A partition's global ids (1-based, in its key order) from its ranks in each range and the number of
    keys in the ranges before each."""
    return np.concatenate([np.zeros(0, np.int64), *(r + (o + 1) for r, o in zip(ranks, offsets))])


@dataclass
class Numbered:
    flows: list                    # the partition's flows with their global ids, in id order
    index: object                  # its Aggregator summary: floods, scans, newest connection per client
    spilled: str | None = None     # or, with a work directory: the Tracked file, and what renumbers it
    ids: list | None = None
    reuse: list | None = None

    def __sizeof__(self) -> int:
        return FLOW_BYTES * len(self.flows) + 16 * len(self.ids or ())


def _renumber(flows: list, ids: list, reuse: list) -> None:
    """Global ids onto a partition's flows (in key order), and the ids that name other flows (TIME_WAIT
    reuse: the same 4-tuple, so the same partition)."""
    for f, i in zip(flows, ids):
        f.id = i
        f.emitted = 0
    for f, r in zip(flows, reuse):
        f.reuse_of = flows[r].id if r >= 0 else None


def number_partition(t: Tracked, ranks: list, offsets: list, thresholds) -> Numbered:
    """Task: give a partition's flows their global ids (`ids_from` its `ranks` in each key range, `_renumber`)
    and index them for the aggregate findings. Spilled flows are read, indexed and let go (the judge reads
    them again)."""
    from .detect.aggregate import Aggregator
    with gc_paused():
        ids = ids_from(ranks, offsets).tolist()
        flows = t.flows if t.spilled is None else _unspill(t.spilled)
        _renumber(flows, ids, t.reuse)
        agg = Aggregator(thresholds)
        agg.index_flows(flows)
        if t.spilled is not None:
            return Numbered([], agg.summary(), t.spilled, ids, t.reuse)
        return Numbered(flows, agg.summary())


def index_of(n: Numbered):
    """Task: the small half of a Numbered (what the driver gathers)."""
    return n.index


CHUNK = 50_000                     # items the driver asks a partition for at a time (at most)
CHUNKS_HELD = 200_000              # items the driver holds at once over all partitions (two chunks each)
LINES_HELD = 64 << 20              # bytes of rendered output the driver holds at once, likewise (a flow's JSON
#                                    record is ~1.5 KB on bench traffic: 25,000 of them were 37 MB a chunk)


@dataclass
class PartSummary:
    """What the driver gathers of a judged partition: counts and its roll-ups, no connection."""
    flows: int
    states_end: dict               # role -> Counter of states at the end
    non_rfc: int                   # transitions off the RFC diagram
    rollups: object                # an Aggregator summary holding the partition's roll-ups
    chunks: dict                   # "lines" / "piles" -> how many chunks of `chunk` items
    chunk: int = CHUNK


@dataclass
class Judged:
    summary: PartSummary
    lines: list                    # the output's items, sorted (see `_lines`), in pickled chunks
    piles: list                    # per host bucket: its transitions as the piles take them, in `ordered`'s
    #                                order, in chunks
    flows: list | None             # the flows themselves, when the driver gathers or queries them
    spilled: str | None = None     # or, queried with a work directory: the file holding them

    def __sizeof__(self) -> int:
        return sum(map(len, self.lines)) + sum(len(c) for b in self.piles for c in b) \
            + FLOW_BYTES * len(self.flows or ())


def judge_partition(n: Numbered, newest, end: int, thresholds, fmt: str | None = None,
                    keep_flows: bool | str = True, chunk: int = CHUNK, parts: int = 1, workdir: str | None = None,
                    name: str = "judge") -> Judged:
    """Task: per-flow findings (the reconnect rule against the whole capture's `newest`), roll-ups, the
    partition's part of the output (`fmt` json or jsonl, rendered here) and of the piles' input.
    `keep_flows`: True, the flows stay in the result (the driver gathers them); "query", they stay for
    netstat and state counts (`sockets_of`, `counts_of`) -- in their spill file when there is one; False,
    dropped."""
    from .detect.aggregate import Aggregator
    from .detect.piles import LISTED
    from .fsm import end_states
    with gc_paused():
        flows = n.flows
        if n.spilled is not None:
            flows = _unspill(n.spilled)
            _renumber(flows, n.ids, n.reuse)
        agg = Aggregator(thresholds)
        agg.newest = newest
        agg.judge_flows(flows, end)
        agg.newest = type(newest)()
        # (ts, entering a listed state, flow, endpoint, position): the key of tcpfsm.detect.piles.ordered over
        # the whole capture's transitions (stable in flow order, then transition order), unique per transition
        # per host bucket (the host whose pile the transition moves: see `replay_piles`)
        buckets = [[] for _ in range(parts)]
        for f in flows:
            cb, sb = buckets[host_bucket(f.client_ip, parts)], buckets[host_bucket(f.server_ip, parts)]
            for i, t in enumerate(f.transitions):
                (cb if t.endpoint == "client" else sb).append(
                    (t.ts, t.new in LISTED, f.id, t.endpoint, i, f.client_raw, f.server_raw, t.new))
        lines = _lines(flows, fmt)
        client, server, non_rfc = end_states(flows)
        states_end = {"client": Counter({s.value: n for s, n in client.items()}),
                      "server": Counter({s.value: n for s, n in server.items()})}
        lines = _chunks(lines, chunk, max(1 << 18, LINES_HELD // (2 * parts)))
        piles = []
        for b in buckets:
            b.sort()
            piles.append(_chunks(b, chunk))
        if workdir is not None:                   # the driver streams them later: on disk until then
            lines = _to_files(lines, workdir, f"{name}-lines")
            piles = [_to_files(b, workdir, f"{name}-piles{h}") for h, b in enumerate(piles)]
        summary = PartSummary(len(flows), states_end, non_rfc, agg.summary(), {"lines": len(lines)}, chunk)
        if keep_flows == "query" and workdir is not None:      # read again from the work directory
            return Judged(summary, lines, piles, None, _spill(flows, workdir, f"{name}-judged"))
        return Judged(summary, lines, piles, flows if keep_flows else None)


def _chunks(items: list, n: int, nbytes: int | None = None) -> list[bytes]:
    """`items` in pickled chunks of `n` (and, with `nbytes`, of at most that many bytes of their last field,
    a rendered line), the list emptied as it goes: a chunk is a third of its tuples' size, and Dask would
    serialise a list of tuples holding bytes item by item, 100 times slower."""
    import pickle
    out = []
    while items:
        k, size = 0, 0
        for item in reversed(items):
            if k >= n or (nbytes is not None and k and size + len(item[-1]) > nbytes):
                break
            k += 1
            size += len(item[-1]) if nbytes is not None else 0
        out.append(pickle.dumps(items[-k:], protocol=5))
        del items[-k:]
    out.reverse()
    return out


def _lines(flows: list, fmt: str | None) -> list:
    """The partition's part of the output, each item ending in its encoded line, sorted so that a merge of
    every partition's items gives the one-process document: json, (flow id, record); csv, (flow id, row);
    jsonl, (time, kind
    order, flow id, position, event) -- tcpfsm.render.records' event order, where events at the same time and
    kind come in flow order, each flow's in its own order (transitions, anomalies, its end)."""
    from .render import records as R
    enc = R.encode
    if fmt == "json":
        flow_json = R.FlowEncoder()
        return [(f.id, flow_json(f)) for f in flows]
    if fmt == "csv":
        from .render.text import flow_csv_row
        return [(f.id, flow_csv_row(f).encode()) for f in flows]
    if fmt != "jsonl":
        return []
    flow_json = R.FlowEncoder()
    out = []
    add = out.append
    for f in flows:
        i = 0
        for t in f.transitions:
            add((t.ts, R.TRANSITION, f.id, i, enc(R.transition_event(f, t)) + b"\n"))
            i += 1
        for a in f.anomalies:
            add((a.ts, R.ANOMALY, f.id, i, enc(R.anomaly_event(f, a)) + b"\n"))
            i += 1
        add((f.last_ts, R.FLOW_END, f.id, i, R.flow_end_json(f, flow_json) + b"\n"))
    out.sort()
    return out


def summary_of(j: Judged) -> PartSummary:
    """Task: a judged partition's counts (its roll-ups go to the merge tree: `rollups_of`)."""
    from dataclasses import replace
    return replace(j.summary, rollups=None)


def rollups_of(j: Judged):
    return j.summary.rollups


def newest_of(agg):
    """Task: the merged newest connection per (client, service), for the judges."""
    return agg.newest


def merge_two(a, b):
    """Task: two Aggregator summaries merged (tcpfsm.detect.aggregate.Aggregator.merge)."""
    with gc_paused():
        return a.merge(b)


def _tree(client, futures: list):
    """The merge of every summary in `futures`, pairwise in a tree on the workers -> one future."""
    level, depth = list(futures), 0
    while len(level) > 1:
        depth += 1
        nxt = [client.submit(merge_two, level[i], level[i + 1], retries=2,
                             key=f"tcpfsm-merge-{depth}-{i}-{uuid.uuid4().hex[:8]}")
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _to_files(chunks: list[bytes], workdir: str, name: str) -> list[str]:
    """Each chunk to its own file in the work directory -> their paths (`chunk_of` reads them back)."""
    tag = uuid.uuid4().hex[:8]
    paths = []
    for i, c in enumerate(chunks):
        path = os.path.join(workdir, f"{name}-{tag}-{i:05d}.chunk")
        with open(path, "wb") as f:
            f.write(c)
        paths.append(path)
    chunks.clear()
    return paths


def _judged_flows(j: Judged) -> list:
    """A judged partition's flows, read back from their spill file when they wait there."""
    if j.flows is not None:
        return j.flows
    if j.spilled is None:
        raise ValueError("this partition's flows were not kept")
    return _unspill(j.spilled)


def sockets_of(j: Judged, times: list, host, port, states, listening: bool):
    """Task: a partition's netstat rows at each time (tcpfsm.api.socket_rows) and the listeners it saw."""
    from .api import socket_filter, socket_rows
    from .detect.occupancy import Occupancy
    with gc_paused():
        occ = Occupancy(_judged_flows(j))
        return socket_rows(occ, times, host, socket_filter(port, states)), (occ.listeners if listening else {})


def select_of(j: Judged, host, port, states, flow_ids) -> bytes:
    """Task: a partition's flows that tcpfsm.api.select_flows chooses (and, with `flow_ids`, only those),
    pickled."""
    import pickle

    from .api import select_flows
    with gc_paused():
        flows = _judged_flows(j)
        if flow_ids:
            ids = set(flow_ids)
            flows = [f for f in flows if f.id in ids]
        return pickle.dumps(select_flows(flows, host, port, states), protocol=5)


def counts_of(j: Judged, start: int, end: int, step: int, host, port, states) -> list:
    """Task: a partition's state counts per host at every step (tcpfsm.detect.occupancy.Occupancy.counts)."""
    from .api import socket_filter
    from .detect.occupancy import Occupancy
    with gc_paused():
        return Occupancy(_judged_flows(j)).counts(start, end, step, host, keep=socket_filter(port, states))


def _read(c) -> bytes:
    if isinstance(c, str):
        with open(c, "rb") as f:
            return f.read()
    return c


def chunk_of(j: Judged, kind: str, i: int) -> bytes:
    """Task: chunk i of a judged partition's `lines` (pickled; from its file with a work directory)."""
    return _read(getattr(j, kind)[i])


def piles_of(j: Judged, h: int) -> list[bytes]:
    """Task: a judged partition's transitions of host bucket h, in pickled chunks."""
    return [_read(c) for c in j.piles[h]]


def host_bucket(host: str, buckets: int) -> int:
    """The pile replay task of a host (crc32: the same in every process)."""
    return zlib.crc32(host.encode()) % buckets


def replay_piles(parts: list, thresholds, end: int):
    """Task: one host bucket's transitions from every partition (`piles_of`), merged in `ordered`'s order,
    through a PileCounter, finished at `end`. A pile is one host's: the buckets' counters hold disjoint hosts,
    and each host's transitions reach its counter in the order one process feeds them, so their union
    (`PileCounter.absorb`) is one process's piles."""
    import pickle

    from .detect.aggregate import Aggregator
    with gc_paused():
        piles = Aggregator(thresholds).piles

        def stream(chunks):
            for c in chunks:
                yield from pickle.loads(c)
        batch = []
        for ts, _entering, fid, endpoint, _i, client_raw, server_raw, new in heapq.merge(*map(stream, parts)):
            batch.append((_PileFlow(fid, client_raw, server_raw), _PileStep(ts, endpoint, new)))
            if len(batch) >= 8192:
                piles.feed(batch)
                batch = []
        piles.feed(batch)
        piles.finish(end)
        return piles


def flows_of(j: Judged) -> bytes:
    """Task: a judged partition's flows, pickled here (bytes: Dask moves them as they are) while the collector
    is still paused: the flows' machines are hundreds of thousands of objects, and a collection in the middle
    of pickling them doubled its time."""
    import pickle
    with gc_paused():
        return pickle.dumps(j.flows, protocol=5)


def _unpickle(blob: bytes):
    import pickle
    with gc_paused():
        return pickle.loads(blob)


# -- the driver -----------------------------------------------------------------------------------------------
@dataclass
class _Table:
    """What Analysis reads of a FlowTable, for the merged flows."""
    flows: list
    clock_stats: object
    clock: int
    evicted: dict = field(default_factory=dict)
    max_flows: int | None = None
    after_eviction: int = 0


class _Merged:
    """The merged Aggregator, as Analysis takes it: every connection was judged in its partition already, so
    `finish` only adds what the merged summaries give (floods, scans, piles, roll-ups)."""

    def __init__(self, agg):
        self.agg = agg
        self.piles = agg.piles

    def finish(self, _flows, end):
        return self.agg.finish([], end)


class _PileFlow:
    __slots__ = ("id", "client_raw", "server_raw")      # (the piles key hosts by address as captured)

    def __init__(self, fid, client_raw, server_raw):
        self.id, self.client_raw, self.server_raw = fid, client_raw, server_raw


class _PileStep:
    __slots__ = ("ts", "endpoint", "new")

    def __init__(self, ts, endpoint, new):
        self.ts, self.endpoint, self.new = ts, endpoint, new


class DaskAnalysis(Analysis):
    """The Analysis of a run whose flows stayed in the partitions (`analyze(..., render=...)`): `flows` is
    empty, the summary counts them from the partitions' summaries, and `write` streams the document from the
    workers while the cluster is up."""
    parts: list
    source: object

    def summary(self) -> dict:
        out = super().summary()
        states_end = {"client": Counter(), "server": Counter()}
        for p in self.parts:
            for role in states_end:
                states_end[role].update(p.states_end[role])
        out["flows"] = sum(p.flows for p in self.parts)
        out["states_at_end"] = {k: dict(sorted(v.items())) for k, v in states_end.items()}
        out["non_rfc_transitions"] = sum(p.non_rfc for p in self.parts)
        return out

    @property
    def occupancy(self):
        raise ValueError("the connections stayed on the Dask workers: netstat and state counts ask them "
                         "while the cluster is up (tcpfsm.distributed.analyze with render and no fmt)")

    def _queryable(self):
        client, judged, fmt = self.source
        if fmt is not None:
            raise ValueError("the connections stayed on the Dask workers (streamed output): netstat and state "
                             "counts need analyze(render=..., fmt=None)")
        return client, judged

    def netstat_many(self, ats: list, host: str | None = None, listening: bool = True, port: int | None = None,
                     states=None):
        """Analysis.netstat_many, each partition listing its own sockets on its worker (`sockets_of`); the
        rows joined here (a 4-tuple is in one partition), listeners first seen at the earliest."""
        from .api import snapshots, socket_filter
        keep = socket_filter(port, states)         # refused here, as one process refuses
        times = [self.instant(spec) for spec in ats]
        client, judged = self._queryable()
        parts = client.gather([client.submit(sockets_of, j, times, host, port, states, listening, pure=False)
                               for j in judged])
        listeners: dict = {}
        for _rows, seen in parts:
            for k, since in seen.items():
                listeners[k] = min(listeners.get(k, since), since)
        rows = [[r for per_time, _ in parts for r in per_time[i]] for i in range(len(times))]
        return snapshots(times, rows, listeners, host, keep, self.end)

    def select(self, host: str | None = None, port: int | None = None, states=None, flow_ids=None) -> list:
        """Analysis.select, each partition choosing among its own flows (`select_of`): only those chosen come
        to the driver, in id order, or in `flow_ids`' order."""
        from .api import select_flows
        select_flows([], host, port, states)       # refused here, as one process refuses
        client, judged = self._queryable()
        want = set(flow_ids or ())
        blobs = client.gather([client.submit(select_of, j, host, port, states, sorted(want) or None, pure=False)
                               for j in judged])
        flows = list(heapq.merge(*(_unpickle(b) for b in blobs), key=lambda f: f.id))
        if not flow_ids:
            return flows
        total = sum(p.flows for p in self.parts)
        unknown = [i for i in flow_ids if not 1 <= i <= total]   # ids are 1..N, every one a flow
        if unknown:
            raise ValueError(f"no flow {unknown[0]} (the capture has flows 1..{total})")
        by_id = {f.id: f for f in flows}
        return [by_id[i] for i in flow_ids if i in by_id]

    def states(self, interval: float = 1.0, host: str | None = None, port: int | None = None, states=None):
        """Analysis.states, each partition counting its own sockets (`counts_of`); the counts summed here."""
        from .api import socket_filter
        step = self.sample_step(interval)
        socket_filter(port, states)
        client, judged = self._queryable()
        parts = client.gather([client.submit(counts_of, j, self.start, self.end, step, host, port, states,
                                             pure=False) for j in judged])
        out = []
        for samples in zip(*parts):
            per_host: dict = {}
            for _t, counts in samples:
                for h, c in counts.items():
                    per_host.setdefault(h, Counter()).update(c)
            out.append((samples[0][0], per_host))
        return out


def need_dask():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ValueError("--workers / --scheduler need Dask: pip install 'tcpfsm[dask]'") from None
    return distributed


def client_for(workers: int | None = None, scheduler: str | None = None):
    """(client, cluster or None): a LocalCluster of `workers` processes, or a Client of the scheduler at
    `scheduler` (tcp://HOST:PORT)."""
    distributed = need_dask()
    import logging
    if scheduler:
        try:
            return distributed.Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as e:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    n = workers or os.cpu_count() or 1
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       # the scheduler's HTTP routes on a free port: with None it takes 8787
                                       # and warns on stderr when another cluster holds it
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    return distributed.Client(cluster), cluster


def analyze(paths, workers: int | None = None, scheduler: str | None = None, client=None,
            partitions: int | None = None, workdir: str | None = None, profile="linux", thresholds=None,
            timers: dict | None = None, end=None, engine: str = "fast", verify_checksums: bool = False,
            capture_point: str = "auto", progress=None, batch_size: int = 16384, render=None,
            fmt: str | None = None):
    """`tcpfsm.api.analyze` for many files on a Dask cluster (see the module docstring). `client`: an
    existing distributed.Client (else one is made from `workers` / `scheduler` and closed at the end).
    `partitions`: how many connection partitions (default: 2 per worker, up to 8 per worker at one per
    PARTITION_BYTES of input). `workdir`: where decode tasks write their partitions and partitions their flows
    and rendered chunks between stages (a path every worker can reach); in worker memory when None, except
    that a local cluster given more than SPILL_ABOVE bytes uses the temporary directory.
    `progress(stage, done, total)` is called as tasks finish.
    `render`: None, the Analysis holds every flow, gathered from the partitions (report, the Python API's
    default). A callable: the flows stay on the workers and `render(an)` is called while the cluster is up
    with an Analysis whose `flows` is empty -- with `fmt` "json" or "jsonl" they are rendered there and
    `write(an, out)` streams the document through the driver in flow order; with `fmt` None, `an.netstat`,
    `an.netstat_many`, `an.states` and `an.select` ask the partitions."""
    from .api import parse_time
    from .capture.multi import MultiCaptureInfo, expand, file_plan, left_out_warning, merge_infos
    from .detect.aggregate import Aggregator
    from .detect.rules import Thresholds
    from .fsm import TimerProfile, get_profile
    prof = profile if isinstance(profile, TimerProfile) else get_profile(profile, **(timers or {}))
    th = thresholds if isinstance(thresholds, Thresholds) else Thresholds().override(**(thresholds or {}))
    if render is not None and fmt not in ("json", "jsonl", "csv", None):
        raise ValueError(f"render: the flows are rendered on the workers as json, jsonl or csv, not {fmt!r}")
    left_out: list[str] = []
    files = expand(paths, left_out)
    if files == ["-"]:
        raise ValueError("a Dask run reads files, not stdin")
    files = [p if "://" in p else os.path.abspath(p) for p in files]
    distributed = need_dask()
    clock = time.perf_counter
    t0 = clock()
    cluster = None
    if client is None:
        client, cluster = client_for(workers, scheduler)
    try:
        nworkers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})) or (workers or 1))
        size = _input_bytes(files)
        # a partition's connections are what one task holds at once: about PARTITION_BYTES of capture each,
        # at most 8 per worker (numbering cuts the keys into P ranges: P x P slice tasks)
        nparts = partitions or max(1, 2 * nworkers, min(8 * nworkers, -(-size // PARTITION_BYTES)))
        if workdir is None and cluster is not None and size > SPILL_ABOVE:
            import tempfile                       # a local cluster's workers share this machine's disk
            workdir = tempfile.gettempdir()
        if workdir is not None:                   # this run's own directory inside it, removed at the end
            workdir = os.path.join(os.path.abspath(workdir), f"tcpfsm-{uuid.uuid4().hex[:12]}")
            os.makedirs(workdir)
        run = uuid.uuid4().hex[:8]
        decoded = [client.submit(decode_file, p, nparts, engine, verify_checksums, workdir, batch_size,
                                 key=f"tcpfsm-decode-{i}-{run}", retries=2)
                   for i, p in enumerate(files)]
        facts_f = [client.submit(facts_of, d, pure=False) for d in decoded]
        facts = _wait(distributed, client, facts_f, "decode", progress)
        t1 = clock()
        # the global plan: files in first-timestamp order, numbering, overlaps, the end
        order = file_plan(files, [f.info.first_ts for f in facts])
        infos = [facts[i].info for i in order]
        info = MultiCaptureInfo(path=files[0] if len(files) == 1 else " ".join(files[i] for i in order))
        bases, ibases, tmaps, tunnels = [], [], [], {"": 0}
        base, ibase = 1, 0
        for x in infos:
            bases.append(base)
            ibases.append(ibase)
            base += x.records
            ibase += len(x.linktypes)
            m = []
            for name in x.tunnels:
                if name not in tunnels:
                    tunnels[name] = len(tunnels)
                m.append(tunnels[name])
            tmaps.append(m)
        info.tunnels = list(tunnels)
        info.files = [{"path": x.path, "first_index": b, "records": x.records, "first_ts": x.first_ts,
                       "last_ts": x.last_ts} for x, b in zip(infos, bases)]
        info.files = [dict(f, path=files[i]) for f, i in zip(info.files, order)]
        merge_infos(info, infos, [facts[i].notes for i in order], Counter())
        info.records = sum(x.records for x in infos)
        info.tcp_segments = sum(x.tcp_segments for x in infos)
        for x in infos:
            info.skipped.update(x.skipped)
            info.checksums.update(getattr(x, "checksums", {}))
        info.bytes_read = sum(getattr(x, "bytes_read", 0) for x in infos)
        if left_out:
            info.warnings.append(left_out_warning(left_out))
        overlap = bool(info.overlaps)
        stop = info.last_ts
        if end is not None:
            stop = max(stop or 0, parse_time(end, info.first_ts or 0))
        plan = Plan(bases, ibases, tmaps, overlap, stop)
        cs, last_clock = _clock(facts, order, overlap)
        table_clock = max(last_clock, stop or 0)
        end_ns = max(table_clock, info.last_ts or 0)      # Analysis.end: where findings are judged
        # track, one task per partition over its pieces of every file in reading order; number; index
        tracked = []
        for p in range(nparts):
            pieces = [client.submit(piece_of, decoded[i], p, pure=False) for i in order]
            tracked.append(client.submit(track_partition, pieces, plan, prof, capture_point, batch_size,
                                         workdir, f"track-{p:05d}", key=f"tcpfsm-track-{p}-{run}", retries=2))
        # number: ranges of keys from the partitions' samples; each range ranks its keys from every partition
        samples = _wait(distributed, client, [client.submit(sample_of, t, pure=False) for t in tracked], "track",
                        progress)
        spl = splitters_of(samples, nparts)
        nranges = len(spl) + 1
        splits = [client.submit(split_keys, t, spl, key=f"tcpfsm-split-{p}-{run}") for p, t in enumerate(tracked)]
        ranked = [client.submit(rank_range, [client.submit(item_of, splits[p], r, key=f"tcpfsm-slice-{p}-{r}-{run}")
                                             for p in range(nparts)], key=f"tcpfsm-rank-{r}-{run}")
                  for r in range(nranges)]
        sizes = client.gather([client.submit(item_of, x, 1, pure=False) for x in ranked])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
        ranks_p = [[client.submit(item_of, client.submit(item_of, x, 0, key=f"tcpfsm-ranks-{r}-{run}"), p,
                                  key=f"tcpfsm-ranks-{r}-{p}-{run}") for r, x in enumerate(ranked)]
                   for p in range(nparts)]
        numbered = [client.submit(number_partition, t, ranks_p[p], offsets, th, key=f"tcpfsm-number-{p}-{run}",
                                  retries=2) for p, t in enumerate(tracked)]
        del decoded, facts_f, pieces, tracked, splits, ranked, ranks_p  # freed on the workers once used
        # the partitions' summaries merged in a tree on the workers (associative and commutative): the driver
        # receives one, never P of them, and the merged newest-connection table goes to the judges directly
        indexes = [client.submit(index_of, n, pure=False) for n in numbered]
        _wait(distributed, client, indexes, "number", progress, gather=False)
        index = _tree(client, indexes)
        del indexes
        t2 = clock()
        with gc_paused():
            newest = client.submit(newest_of, index, pure=False)
            keep = render is None                 # gather the flows; else they stay on the workers, where
            hold = True if keep else "query" if fmt is None else False   # netstat and state counts query them
            chunk = max(1000, min(CHUNK, CHUNKS_HELD // (2 * nparts)))
            judged = [client.submit(judge_partition, n, newest, end_ns, th, fmt if render else None, hold, chunk,
                                    nparts, workdir, f"judge-{p:05d}", key=f"tcpfsm-judge-{p}-{run}", retries=2)
                      for p, n in enumerate(numbered)]
            del numbered, newest
            parts = _wait(distributed, client, [client.submit(summary_of, j, pure=False) for j in judged],
                          "judge", progress)
            t3 = clock()
            # the roll-ups (small) merged first, then into the index (large) once
            rollups = _tree(client, [client.submit(rollups_of, j, pure=False) for j in judged])
            whole = client.submit(merge_two, index, rollups, pure=False).result()
            del rollups
            del index
            # the piles, replayed per host bucket on the workers, their counters joined here
            replays = [client.submit(replay_piles, [client.submit(piles_of, j, h, pure=False) for j in judged], th,
                                     end_ns, pure=False, retries=2) for h in range(nparts)]
            whole.piles = Aggregator(th).piles
            for fut in distributed.as_completed(replays):
                whole.piles.absorb(fut.result())
                del fut
            del replays
            flows = []
            if keep:
                blobs = client.gather([client.submit(flows_of, j, pure=False) for j in judged])
                flows = list(heapq.merge(*(_unpickle(b) for b in blobs), key=lambda f: f.id))
                del blobs
            cls = Analysis if keep else DaskAnalysis
            an = cls(info, prof, th, _Table(flows, cs, table_clock), stop, aggregator=_Merged(whole))
        an.dropped_bad_checksum = sum(f.dropped_bad for f in facts)
        an.info.warnings.append(f"analysed on Dask: {len(files)} file(s), {nparts} connection partitions, "
                                f"{nworkers} worker(s); path health and Zeek's view are not computed there")
        an.partitions = nparts
        t4 = clock()
        an.timings = {"decode": t1 - t0, "track": t2 - t1, "judge": t3 - t2, "merge+detect": t4 - t3}
        if render is not None:
            an.parts = parts
            an.source = (client, judged, fmt)
            render(an)
            an.timings["write"] = clock() - t4
        an.timings["total"] = clock() - t0
        return an
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
        if workdir is not None:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)


def _input_bytes(files: list[str]) -> int:
    """The captures' total size (what is known of it: a URL's size when fsspec can tell)."""
    total = 0
    for p in files:
        try:
            if "://" in p:
                import fsspec
                fs, path = fsspec.core.url_to_fs(p)
                total += int(fs.size(path) or 0)
            else:
                total += os.path.getsize(p)
        except Exception:                         # unknown size: the default partitions
            pass
    return total


def _clock(facts, order, overlap):
    """The capture's clock steps (per file, and across file boundaries) and its last monotonic time."""
    from .track.flowtable import ClockStats
    cs = ClockStats()
    ordered_facts = [facts[i] for i in order]
    prev = None
    for f in ordered_facts:
        cs.backwards_steps += f.backwards_steps
        cs.largest_step_ns = max(cs.largest_step_ns, f.largest_step)
        if f.first_row_ts is None:
            continue
        if prev is not None and not overlap and f.first_row_ts < prev:
            cs.backwards_steps += 1
            cs.largest_step_ns = max(cs.largest_step_ns, prev - f.first_row_ts)
        prev = f.last_row_ts
    return cs, max((f.last_row_ts for f in ordered_facts if f.last_row_ts is not None), default=0)


def _items(client, judged, kind: str, nchunks: int):
    """One judged partition's `kind` items, a chunk at a time (the next asked for while this one is read):
    the driver holds a chunk per partition, never a partition."""
    nxt = client.submit(chunk_of, judged, kind, 0, pure=False) if nchunks else None
    for i in range(nchunks):
        cur = nxt
        nxt = client.submit(chunk_of, judged, kind, i + 1, pure=False) if i + 1 < nchunks else None
        items = _unpickle(cur.result())
        del cur
        yield from items


def write(an, out) -> None:
    """The document of an analysis whose flows stayed on the workers (`analyze(..., render=...)`), into the
    byte sink `out`: json, tcpfsm.render.records.write_analysis_json's with the flows merged by id from the
    partitions; jsonl, records.write_event_stream's, the partitions' events merged by (time, kind, flow,
    position) with the aggregate findings (after every flow event at their time and kind), then stats; csv,
    tcpfsm.render.text.write_flows_csv's, the rows merged by id."""
    from .render import records as R
    client, judged, fmt = an.source
    streams = [_items(client, j, "lines", p.chunks["lines"]) for j, p in zip(judged, an.parts)]
    if fmt == "json":
        R.write_analysis_json(an, out, spooled=(line for _id, line in heapq.merge(*streams)))
        return
    if fmt == "csv":                               # tcpfsm.render.text.write_flows_csv's document
        from .render.text import flows_csv_header
        out.write(flows_csv_header().encode())
        for _id, line in heapq.merge(*streams):
            out.write(line)
        return
    closing = R.closing_events(an)                 # aggregate findings by time (stable), then stats
    found = sorted(an.findings, key=lambda a: a.ts_end or a.ts)
    last = 1 << 62                                 # after every flow's events at the same (time, kind)
    aggs = ((a.ts_end or a.ts, R.ANOMALY, last, i, R.encode(ev) + b"\n")
            for i, (a, ev) in enumerate(zip(found, closing)))
    w = out.write
    for item in heapq.merge(*streams, aggs):
        w(item[4])
    w(R.encode(closing[-1]) + b"\n")


def _wait(distributed, client, futures: list, stage: str, progress, gather: bool = True) -> list | None:
    """Results of `futures` in their order; `progress(stage, done, total)` as each finishes. A task that
    failed raises its error here (a CaptureError stays one; a lost worker was retried by Dask first)."""
    total = len(futures)
    if progress is not None:
        progress(stage, 0, total)
        done = 0
        for _ in distributed.as_completed(futures):
            done += 1
            progress(stage, done, total)
    if not gather:
        distributed.wait(futures)
        for f in futures:
            if f.status == "error":
                f.result()                         # raises the task's error
        return None
    return client.gather(futures)
