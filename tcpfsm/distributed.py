"""Many captures analysed on a Dask cluster, partitioned by connection, with the answers of one process.

Owns the distributed run: `analyze(paths, workers=N | scheduler="tcp://HOST:PORT")` and its three steps,
the tasks they submit and the merge of their results. It must not decide states, findings or piles: every
connection goes through the same FlowTable, and the merged flows through the same Analysis (piles,
occupancy, aggregate findings), as in `tcpfsm.api.analyze`. Dask is imported only here, only when used
(the optional extra `tcpfsm[dask]`).

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
   after every batch and settled at the capture's end (the end of the last file, or --end).
   Why timers across file boundaries behave as in one file: a connection's timers only ever fire on that
   connection's own clock -- before its next segment, or when the table advances to a time -- and the
   partition sees its segments in global time order, with the global end; nothing in the table resets at a
   file boundary, because the table never sees one.
3. Merge: each partition returns its flows keyed by (first timestamp, first packet) -- the order in which
   one process creates, and so numbers, connections. `merge` of two partials is the sorted union of their
   flows (keys are unique), an associative and commutative operation (tests check it), so partials can be
   combined in any grouping. The driver numbers the merged flows 1..N, fixes the ids that point at other
   flows (TIME_WAIT reuse), and builds the Analysis from them: per-host occupancy, piles (fed every
   transition in the stream order of `tcpfsm.detect.piles.ordered`) and the aggregate findings are computed
   there, by the one implementation, from the exact union -- which is why they equal the single run's.

Exact where one process is exact, with these known differences: the cap on tracked connections is not
applied per partition (every connection is kept: --max-tracked does not apply); path health (per-segment
analysis) and Zeek's view are not computed (a warning says so); a capture whose timestamps step backwards
gets the backwards steps counted per file and across file boundaries (not through an overlap merge), and its
reordering window applies within each partition's batches.
"""
from __future__ import annotations

import functools
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .api import gc_paused      # the cyclic collector paused, as for one process's analysis

NS = 1_000_000_000
FLUSH_ROWS = 1 << 21          # rows a decode task buffers before writing its partitions to the work directory
_FNV = np.uint64(0x100000001B3)


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
class Partial:
    """Flows of some partitions, sorted by key (first timestamp, first packet), with the keys of the flows
    whose TIME_WAIT they reused. `merge` is associative and commutative."""
    flows: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    reuse: dict = field(default_factory=dict)     # key of a flow -> key of the flow it reused


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
                    batch_size: int = 16384) -> Partial:
    """Task: every segment of one partition's connections through one FlowTable -> its Partial, pickled here
    (bytes: Dask moves them as they are), while the collector is still paused: the flows' machines are
    hundreds of thousands of objects, and a collection in the middle of pickling them doubled its time."""
    import pickle
    with gc_paused():
        return pickle.dumps(_track(pieces_by_file, plan, profile, capture_point, batch_size), protocol=5)


def unpickle(blob: bytes) -> Partial:
    import pickle
    with gc_paused():
        return pickle.loads(blob)


def _track(pieces_by_file: list, plan: Plan, profile, capture_point: str, batch_size: int) -> Partial:
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
    flows = table.flows
    by_id = {f.id: f for f in flows}
    part = Partial()
    for f in sorted(flows, key=flow_key):
        part.flows.append(f)
        part.keys.append(flow_key(f))
        if f.reuse_of is not None and f.reuse_of in by_id:
            part.reuse[flow_key(f)] = flow_key(by_id[f.reuse_of])
    return part


def flow_key(f) -> tuple[int, int]:
    """The order in which one process creates (and numbers) connections: the monotonic time of the segment
    that created it, then its global packet index."""
    return (f.first_ts, f.first_packet)


def merge(a: Partial, b: Partial) -> Partial:
    """The union of two partials, sorted by key: associative and commutative (keys are unique)."""
    import heapq
    pairs = list(heapq.merge(zip(a.keys, a.flows), zip(b.keys, b.flows), key=lambda kf: kf[0]))
    return Partial([f for _, f in pairs], [k for k, _ in pairs], {**a.reuse, **b.reuse})


def number(part: Partial) -> list:
    """Give the merged flows their global ids (1..N in key order) and fix the ids that name other flows."""
    ids = {}
    for i, (k, f) in enumerate(zip(part.keys, part.flows), 1):
        f.id = i
        ids[k] = i
    for k, f in zip(part.keys, part.flows):
        old = part.reuse.get(k)
        f.reuse_of = ids.get(old) if old is not None else None
        f.emitted = 0
    return part.flows


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
                                       dashboard_address=None, silence_logs=logging.ERROR)
    return distributed.Client(cluster), cluster


def analyze(paths, workers: int | None = None, scheduler: str | None = None, client=None,
            partitions: int | None = None, workdir: str | None = None, profile="linux", thresholds=None,
            timers: dict | None = None, end=None, engine: str = "fast", verify_checksums: bool = False,
            capture_point: str = "auto", progress=None, batch_size: int = 16384):
    """`tcpfsm.api.analyze` for many files on a Dask cluster (see the module docstring). `client`: an
    existing distributed.Client (else one is made from `workers` / `scheduler` and closed at the end).
    `partitions`: how many connection partitions (default: 2 per worker). `workdir`: where decode tasks
    write their partitions (a path every worker can reach); in worker memory when None.
    `progress(stage, done, total)` is called as tasks finish."""
    from .api import parse_time
    from .capture.multi import MultiCaptureInfo, expand, file_plan, left_out_warning, merge_infos
    from .detect.rules import Thresholds
    from .fsm import TimerProfile, get_profile
    prof = profile if isinstance(profile, TimerProfile) else get_profile(profile, **(timers or {}))
    th = thresholds if isinstance(thresholds, Thresholds) else Thresholds().override(**(thresholds or {}))
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
        nparts = partitions or max(1, 2 * nworkers)
        if workdir is not None:                   # this run's own directory inside it, removed at the end
            workdir = os.path.join(os.path.abspath(workdir), f"tcpfsm-{uuid.uuid4().hex[:12]}")
            os.makedirs(workdir)
        decoded = [client.submit(decode_file, p, nparts, engine, verify_checksums, workdir, batch_size,
                                 key=f"tcpfsm-decode-{i}-{uuid.uuid4().hex[:8]}", retries=2)
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
        # tracking, one task per partition, over its pieces of every file in reading order
        tracked = []
        for p in range(nparts):
            pieces = [client.submit(piece_of, decoded[i], p, pure=False) for i in order]
            tracked.append(client.submit(track_partition, pieces, plan, prof, capture_point, batch_size,
                                         key=f"tcpfsm-track-{p}-{uuid.uuid4().hex[:8]}", retries=2))
        with gc_paused():
            parts = [unpickle(b) for b in _wait(distributed, client, tracked, "track", progress)]
        del decoded, facts_f, tracked
        t2 = clock()
        with gc_paused():
            an = _finish(parts, facts, order, overlap, info, prof, th, stop, files, nparts, nworkers)
        t3 = clock()
        an.timings = {"decode": t1 - t0, "track": t2 - t1, "merge+detect": t3 - t2, "total": t3 - t0}
        return an
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
        if workdir is not None:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)


def _finish(parts, facts, order, overlap, info, prof, th, stop, files, nparts, nworkers):
    """The driver's last step: merge the partials, number the flows, build the Analysis from them."""
    from .api import Analysis
    from .track.flowtable import ClockStats
    whole = functools.reduce(merge, parts, Partial())
    flows = number(whole)
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
    last_clock = max((f.last_row_ts for f in ordered_facts if f.last_row_ts is not None), default=0)
    table = _Table(flows, cs, max(last_clock, stop or 0))
    an = Analysis(info, prof, th, table, stop)
    an.dropped_bad_checksum = sum(f.dropped_bad for f in facts)
    an.info.warnings.append(f"analysed on Dask: {len(files)} file(s), {nparts} connection partitions, "
                            f"{nworkers} worker(s); path health and Zeek's view are not computed there")
    an.partitions = nparts
    return an


def _wait(distributed, client, futures: list, stage: str, progress) -> list:
    """Results of `futures` in their order; `progress(stage, done, total)` as each finishes. A task that
    failed raises its error here (a CaptureError stays one; a lost worker was retried by Dask first)."""
    total = len(futures)
    if progress is not None:
        progress(stage, 0, total)
        done = 0
        for _ in distributed.as_completed(futures):
            done += 1
            progress(stage, done, total)
    return client.gather(futures)
