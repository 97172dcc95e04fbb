"""Many capture files read as one capture (rotated `tcpdump -C/-G` parts, a directory, a glob).

Owns: expanding FILE arguments (files, directories, glob patterns) into a list of files; their order (by
first timestamp); overlap detection and the merge by time of files that overlap; the global numbering of
what is numbered per file -- packet indexes, pcapng interfaces (the `iface` column) and tunnel descriptions
(the `tunnel` column) -- and the per-file table (`info.files`) that maps a global packet index back to its
file and index in it. It must not decode packets (each file is read by its own decoder, any of them) nor
know about flows.

Numbering. Files are ordered by the timestamp of their first record (then by path). File k's packets are
numbered `first_index[k] + local index - 1`, where `first_index[k]` is 1 plus the records of the files
before it: a global index names one record of one file (`locate`), and with files that do not overlap it
is exactly the index the concatenated capture (`mergecap -a`) would give.

Overlap. When a file starts before the previous one has ended, their segments are merged by timestamp (a
k-way merge of their batches; equal stamps keep file order) and the overlap is reported in `info.overlaps`
and as a warning. Indexes keep their per-file numbering above, so they are not in time order there; to know
where the later files start, an overlapping file is counted once before it is merged (read twice).

A single file is not wrapped: `open_many([path])` is the decoder's own capture, so one file reads exactly
as before.
"""
from __future__ import annotations

import glob
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from .batch import Batch, CaptureError, CaptureInfo

__all__ = ["expand", "open_many", "MultiCapture", "MultiCaptureInfo", "locate", "file_plan"]

_GLOB = set("*?[")


_CAPTURE_MAGIC = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                  b"\x0a\x0d\x0d\x0a", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


def _looks_like_capture(path: str) -> bool:
    """pcap, pcapng, or gzip/bz2/xz-compressed (the reader decides about the content)."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return True                               # let the reader say what is wrong with it
    return head.startswith(_CAPTURE_MAGIC)


def expand(specs, left_out: list | None = None) -> list[str]:
    """FILE arguments -> capture files: a directory stands for the captures in it (regular files, not
    hidden, that start like a pcap, a pcapng or a compressed file, sorted by name; the others are appended to
    `left_out` for a warning), a pattern with * ? [ for its matches (sorted); a file or a URL (proto://..., read through fsspec
    by tcpfsm.distributed) for itself. Duplicates are dropped.
    "-" (stdin) only alone. A pattern that matches nothing or an empty directory is a CaptureError."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    specs = [os.fspath(s) for s in specs]
    if not specs:
        raise CaptureError("no capture file given")
    if "-" in specs:
        if len(specs) > 1:
            raise CaptureError("stdin (-) cannot be read together with other files")
        return ["-"]
    out: list[str] = []
    for s in specs:
        if "://" in s:                          # an fsspec URL (the Dask run fetches it on the worker)
            found = [s]
        elif os.path.isdir(s):
            names = sorted(os.path.join(s, n) for n in os.listdir(s)
                           if not n.startswith(".") and os.path.isfile(os.path.join(s, n)))
            found = [n for n in names if _looks_like_capture(n)]
            if left_out is not None:
                left_out.extend(n for n in names if n not in found)
            if not found:
                raise CaptureError(f"{s}: is a directory without capture files")
        elif not os.path.exists(s) and _GLOB & set(s):
            found = sorted(p for p in glob.glob(s) if os.path.isfile(p))
            if not found:
                raise CaptureError(f"{s}: no file matches")
        else:
            found = [s]
        out.extend(found)
    seen: set[str] = set()
    uniq = []
    for p in out:
        key = p if "://" in p else os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            uniq.append(p)
    return uniq


@dataclass(slots=True)
class MultiCaptureInfo(CaptureInfo):
    """CaptureInfo of several files read as one: the sums, plus `files` (one dict per file in reading order:
    path, first_index, records, first_ts, last_ts, in ns) and `overlaps` (pairs of files whose times overlap:
    first, second, seconds)."""

    files: list[dict] = field(default_factory=list)
    overlaps: list[dict] = field(default_factory=list)


def locate(files: list[dict], index: int) -> tuple[str, int] | None:
    """A global packet index -> (file path, index in that file), or None when no file holds it."""
    lo, hi = 0, len(files)
    while lo < hi:                               # the last file whose first_index <= index
        mid = (lo + hi) // 2
        if files[mid]["first_index"] <= index:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0:
        return None
    f = files[lo - 1]
    local = index - f["first_index"] + 1
    if f.get("records") is not None and local > f["records"]:
        return None
    return f["path"], local


def open_many(paths, opener: Callable[[str], object]):
    """One file: `opener(path)` itself (unchanged behaviour). Several: a MultiCapture over them."""
    left_out: list[str] = []
    paths = expand(paths, left_out)
    cap = opener(paths[0]) if len(paths) == 1 else MultiCapture(paths, opener)
    if left_out:
        cap.info.warnings.append(left_out_warning(left_out))
    return cap


def left_out_warning(left_out: list[str]) -> str:
    names = ", ".join(os.path.basename(n) for n in left_out[:5]) + (", ..." if len(left_out) > 5 else "")
    return f"{len(left_out)} file(s) in the directory are not captures and were left out: {names}"


def first_timestamp(path: str, opener: Callable[[str], object]) -> int | None:
    """The timestamp of the file's first record (ns), reading only as far as its first TCP segment (all of
    it when it holds none)."""
    cap = opener(path)
    try:
        it = iter(cap.batches(64))
        next(it, None)
        return cap.info.first_ts
    finally:
        close = getattr(cap, "close", None)
        if close is not None:
            close()


def file_plan(paths: list[str], first_ts: list[int | None]) -> list[int]:
    """Reading order of files: by first timestamp, then path; files without any record last."""
    return sorted(range(len(paths)), key=lambda i: (first_ts[i] is None, first_ts[i] or 0, paths[i]))


def overlaps_of(files: list[dict]) -> list[dict]:
    """Pairs of files (in reading order) where a later one starts before an earlier one ended."""
    out = []
    latest = None                                 # (last_ts, path) of the file that ends last so far
    for f in files:
        if f["first_ts"] is None:
            continue
        if latest is not None and f["first_ts"] < latest[0]:
            out.append({"first": latest[1], "second": f["path"], "seconds": (latest[0] - f["first_ts"]) / 1e9})
        if f["last_ts"] is not None and (latest is None or f["last_ts"] > latest[0]):
            latest = (f["last_ts"], f["path"])
    return out


class _Part:
    """One file being read: its capture, its global numbering, its batches not yet handed out."""

    def __init__(self, path: str, cap, base: int, iface_base: int):
        self.path, self.cap, self.base, self.iface_base = path, cap, base, iface_base
        self.it: Iterator[Batch] | None = None
        self.buf: dict[str, np.ndarray] | None = None     # rows read, not yet handed out
        self.done = False
        self.tmap = np.zeros(1, np.int64)                 # local tunnel number -> global


class MultiCapture:
    """Several capture files as one: `.info` (a MultiCaptureInfo) and `.batches(size)`, like one capture."""

    def __init__(self, paths: list[str], opener: Callable[[str], object]):
        self.opener = opener
        firsts = [first_timestamp(p, opener) for p in paths]
        order = file_plan(paths, firsts)
        self.paths = [paths[i] for i in order]
        self.firsts = [firsts[i] for i in order]
        self.info = MultiCaptureInfo(path=" ".join(self.paths))
        self.notes: Counter = Counter()
        self._tunnels: dict[str, int] = {"": 0}
        self._done_parts: list[_Part] = []
        self._consumed = False

    # ---- numbering --------------------------------------------------------------------------------------
    def _count(self, path: str) -> tuple[int, int]:
        """(records, interfaces) of a file, by reading it once (only for files merged with an overlap)."""
        cap = self.opener(path)
        for _ in cap.batches(65536):
            pass
        return cap.info.records, len(cap.info.linktypes)

    def _remap(self, part: _Part, b: Batch) -> dict[str, np.ndarray]:
        c = dict(b.cols)
        c["index"] = c["index"] + (part.base - 1)
        if part.iface_base:
            c["iface"] = (c["iface"].astype(np.int64) + part.iface_base).astype(c["iface"].dtype)
        tun = c.get("tunnel")
        if tun is not None and tun.any():
            names = part.cap.info.tunnels
            if len(part.tmap) < len(names):
                extra = []
                for name in names[len(part.tmap):]:
                    g = self._tunnels.get(name)
                    if g is None:
                        g = self._tunnels[name] = len(self._tunnels)
                        self.info.tunnels.append(name)
                    extra.append(g)
                part.tmap = np.concatenate([part.tmap, np.array(extra, np.int64)])
            c["tunnel"] = part.tmap[tun].astype(tun.dtype)
        return c

    # ---- reading ----------------------------------------------------------------------------------------
    def batches(self, size: int = 65536) -> Iterator[Batch]:
        if self._consumed:
            raise CaptureError("capture already read (open it again)")
        self._consumed = True
        size = max(1, int(size))
        pending = list(range(len(self.paths)))       # files not opened yet, in reading order
        active: list[_Part] = []
        known: list[tuple[int, int] | None] = [None] * len(self.paths)    # (records, interfaces) counted ahead
        base, iface_base = 1, 0
        try:
            while active or pending:
                # fill every active file's buffer (or see it end)
                for part in active:
                    while part.buf is None and not part.done:
                        b = next(part.it, None)
                        if b is None:
                            part.done = True
                        else:
                            part.buf = self._remap(part, b)
                        self._sync(active)
                for part in [p for p in active if p.done and p.buf is None]:
                    active.remove(part)
                    self._done_parts.append(part)
                # open the next file when nothing is active, or when it starts before what is buffered ends
                if pending:
                    nxt_first = self.firsts[pending[0]]
                    horizon = min((int(p.buf["ts"].max()) for p in active if p.buf is not None), default=None)
                    if not active or (nxt_first is not None and horizon is not None and nxt_first <= horizon):
                        k = pending.pop(0)
                        if active:                    # an overlap: the open files' sizes are needed now
                            base, iface_base = 1, 0
                            for part in self._done_parts:
                                base += part.cap.info.records
                                iface_base += len(part.cap.info.linktypes)
                            for part in active:
                                i = self.paths.index(part.path)
                                if known[i] is None:
                                    known[i] = self._count(part.path)
                                base += known[i][0]
                                iface_base += known[i][1]
                        else:
                            base = 1 + sum(p.cap.info.records for p in self._done_parts)
                            iface_base = sum(len(p.cap.info.linktypes) for p in self._done_parts)
                        cap = self.opener(self.paths[k])
                        part = _Part(self.paths[k], cap, base, iface_base)
                        part.it = iter(cap.batches(size))
                        active.append(part)
                        continue
                if not active:
                    continue
                live = [p for p in active if p.buf is not None]
                if len(active) == 1:                  # the common case: one file at a time, batches as they are
                    part = live[0]
                    out, part.buf = part.buf, None
                    yield Batch(out)
                    continue
                # several files at once: hand out, merged by time, what no open file can still precede
                horizon = min(int(p.buf["ts"].max()) for p in live)
                if pending and self.firsts[pending[0]] is not None:
                    horizon = min(horizon, self.firsts[pending[0]] - 1)
                pieces = []
                for p in live:
                    ts = p.buf["ts"]
                    over = np.flatnonzero(ts > horizon)
                    cut = int(over[0]) if len(over) else len(ts)
                    if cut:
                        pieces.append({k: v[:cut] for k, v in p.buf.items()})
                        p.buf = {k: v[cut:] for k, v in p.buf.items()} if cut < len(ts) else None
                if not pieces:                        # cannot happen (the horizon is some buffer's maximum)
                    raise AssertionError("merge made no progress")
                cols = {k: np.concatenate([pc[k] for pc in pieces]) for k in pieces[0]}
                order = np.argsort(cols["ts"], kind="stable")
                yield Batch({k: v[order] for k, v in cols.items()})
        finally:
            for part in active:
                close = getattr(part.cap, "close", None)
                if close is not None:
                    close()
        self._finish()

    def _sync(self, active: list[_Part]) -> None:
        """The summed counters (records, segments, skips, checksums, bytes read) over every file opened."""
        parts = self._done_parts + active
        i = self.info
        i.records = sum(p.cap.info.records for p in parts)
        i.tcp_segments = sum(p.cap.info.tcp_segments for p in parts)
        i.bytes_read = sum(getattr(p.cap.info, "bytes_read", 0) for p in parts)
        skipped, checksums = Counter(), Counter()
        for p in parts:
            skipped.update(p.cap.info.skipped)
            checksums.update(getattr(p.cap.info, "checksums", {}))
        i.skipped, i.checksums = skipped, checksums

    def _finish(self) -> None:
        parts = sorted(self._done_parts, key=lambda p: self.paths.index(p.path))
        self._sync([])
        i = self.info
        i.files = [{"path": p.path, "first_index": p.base, "records": p.cap.info.records,
                    "first_ts": p.cap.info.first_ts, "last_ts": p.cap.info.last_ts} for p in parts]
        merge_infos(i, [p.cap.info for p in parts], [getattr(p.cap, "notes", {}) for p in parts], self.notes)

    def close(self) -> None:
        pass


def merge_infos(into: MultiCaptureInfo, infos: list[CaptureInfo], notes: list, notes_into: Counter) -> None:
    """The per-file facts that are not plain sums: formats, link types, times, warnings, overlaps. `into`
    already holds `files` (reading order, aligned with `infos`)."""
    formats = sorted({x.format for x in infos if x.format})
    into.format = formats[0] if len(formats) == 1 else "+".join(formats)
    into.compressed = any(x.compressed for x in infos)
    into.linktypes = [lt for x in infos for lt in x.linktypes]
    into.ts_resolution = [r for x in infos for r in x.ts_resolution]
    firsts = [x.first_ts for x in infos if x.first_ts is not None]
    lasts = [x.last_ts for x in infos if x.last_ts is not None]
    into.first_ts = min(firsts) if firsts else None
    into.last_ts = max(lasts) if lasts else None
    into.truncated = any(x.truncated for x in infos)
    into.warnings = list(into.warnings) + [f"{os.path.basename(f['path'])}: {w}"
                                           for f, x in zip(into.files, infos) for w in x.warnings]
    for n in notes:
        notes_into.update(n)
    into.overlaps = overlaps_of(into.files)
    for o in into.overlaps:
        into.warnings.append(f"{os.path.basename(o['second'])} starts {o['seconds']:.6f} s before "
                             f"{os.path.basename(o['first'])} ends: their packets were merged by timestamp")
