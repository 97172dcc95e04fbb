"""The Python API: `tcpfsm.analyze(path)` wires capture -> track -> fsm -> detect.

Owns the `Analysis` result object and the parsing of user time specs. The CLI
is a thin layer over this module; nothing here prints.
"""
from __future__ import annotations

import functools
import gc
import re
import time
from contextlib import contextmanager
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from .capture.ahead import read_ahead
from .capture.batch import Batch, CaptureInfo
from .capture.reader import open_capture
from .detect.occupancy import Occupancy, listener_row
from .detect.aggregate import Aggregator
from .detect.piles import host_text, ordered
from .detect.rules import Finding, Thresholds
from .fsm import State, TimerProfile, end_states, get_profile
from .track.flowtable import Attempt, ClockStats, Flow, FlowTable, half_open
from .zeek import ZeekTracker, zeek_summary_for_flows

NS = 1_000_000_000
READ_AHEAD = 2                   # batches decoded ahead by a worker thread (capture/ahead.py; 0: none)
MAX_SAMPLES = 100_000            # state-count samples one states() call may return (a day at 1 s): the fuzzer
#                                  found 500,000 taking a GiB and minutes


@dataclass(slots=True)
class Socket:
    """One row of a netstat snapshot."""

    host: str
    local: str
    remote: str
    state: State
    flow: int | None
    alt: State | None = None      # the state it may be in instead, where the packets cannot decide


@dataclass(slots=True)
class Snapshot:
    at: int              # ns
    sockets: list[Socket]


class Analysis:
    """Everything tcpfsm learned from one capture."""

    def __init__(self, info: CaptureInfo, profile: TimerProfile, thresholds: Thresholds, table: FlowTable,
                 end: int | None = None, aggregator: Aggregator | None = None, streamed: int = 0):
        """`streamed`: how many finished connections were already handed out (and forgotten) while reading;
        `flows` then holds only those still tracked at the end, and time-machine queries are unavailable."""
        self.info = info
        self.profile = profile
        self.thresholds = thresholds
        self.flows: list[Flow] = table.flows
        self.clock: ClockStats = table.clock_stats
        self.evicted = dict(table.evicted)
        self.streamed = streamed
        self.max_tracked: int | None = table.max_flows  # the cap on connections tracked at once
        self.not_kept = 0       # half-open attempts evicted over the cap: in the findings, not in `flows`
        self.after_eviction = table.after_eviction  # segments of connections evicted before they finished
        self.start = info.first_ts or 0
        self.end = max(table.clock, info.last_ts or 0, end or 0)
        if aggregator is None:
            aggregator = Aggregator(thresholds)
            aggregator.piles.feed(ordered([(f, t) for f in self.flows for t in f.transitions]))
        self.findings: list[Finding] = aggregator.finish(self.flows, self.end)
        # (host, state) -> Peak: most held at once (>= min age); the host as text
        self.pile_peaks = host_text(aggregator.piles.peaks)
        self._occupancy: Occupancy | None = None
        self._by_id_map: dict[int, Flow] | None = None     # `_by_id`, made when first asked for
        self.timings: dict[str, float] = {}     # seconds per stage, filled by analyze()
        self.zeek_conns: list = []                # Zeek's view of the connections, when analyze(zeek=True)

    @property
    def occupancy(self) -> Occupancy:
        if self.streamed:
            raise ValueError("this analysis was streamed (finished connections were not kept): "
                             "netstat and state counts need the whole capture in memory")
        if self._occupancy is None:
            self._occupancy = Occupancy(self.flows)
        return self._occupancy

    @property
    def _by_id(self) -> dict[int, Flow]:
        """Flow id -> flow, made on first use: a dict entry per flow, not needed to render most outputs."""
        if self._by_id_map is None:
            self._by_id_map = {f.id: f for f in self.flows}
        return self._by_id_map

    def flow(self, flow_id: int) -> Flow:
        return self._by_id[flow_id]

    def find_flow(self, flow_id: int) -> Flow | None:
        """The flow with this id, or None (a streamed analysis forgot it; an aggregate may still name it)."""
        return self._by_id.get(flow_id)

    def time(self, spec: str | float | int) -> int:
        """A user time (epoch seconds, ISO 8601, HH:MM:SS on the capture's day, or +12.5s) -> ns."""
        return parse_time(spec, self.start)

    def netstat(self, at: str | float | int, host: str | None = None, listening: bool = True,
                port: int | None = None, states=None) -> Snapshot:
        """What `netstat -nat` would have listed at `at` (on `host`, or on every host seen); `port` and
        `states` filter as in netstat_many."""
        return self.netstat_many([at], host, listening, port=port, states=states)[0]

    def netstat_many(self, ats: list, host: str | None = None, listening: bool = True,
                     port: int | None = None, states=None) -> list[Snapshot]:
        """`port`: only sockets with this port at either end (`lsof -i:PORT`); `states`: only these states
        (`ss state S`), each a State or any spelling `parse_state` knows."""
        keep = socket_filter(port, states)
        times = [self.instant(spec) for spec in ats]
        occ = self.occupancy
        return snapshots(times, socket_rows(occ, times, host, keep), occ.listeners if listening else {}, host,
                         keep, self.end)

    def instant(self, spec) -> int:
        """`time(spec)`, or spec itself when it already is a capture time in ns."""
        return spec if isinstance(spec, int) and not isinstance(spec, bool) and spec > 10**15 else self.time(spec)

    def sample_step(self, interval: float) -> int:
        """The step (ns) of `states(interval)`, refused as it says."""
        import math

        if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval {interval!r}: must be a positive number of seconds")
        if (self.end - self.start) / interval / NS > MAX_SAMPLES:
            raise ValueError(f"interval {interval:g} s gives more than {MAX_SAMPLES:,} samples; use a larger one")
        return max(int(interval * NS), 1)

    def states(self, interval: float = 1.0, host: str | None = None, port: int | None = None,
               states=None) -> list[tuple[int, dict[str, Counter]]]:
        """State counts per host at every `interval` seconds from the capture's start to its end. An interval
        that is not a positive finite number, or that would give more than MAX_SAMPLES samples, is refused.
        `port` and `states` count only the sockets netstat_many's filters would list."""
        step = self.sample_step(interval)
        return self.occupancy.counts(self.start, self.end, step, host, keep=socket_filter(port, states))

    def select(self, host: str | None = None, port: int | None = None, states=None,
               flow_ids=None) -> list[Flow]:
        """The flows a filter names: `host` at either end; `port` at either end (with `host`: that host's own
        port); `states`: either endpoint held one of them at some point (RFC, netstat or ss spelling);
        `flow_ids`: these flows, in this order (an unknown id is a ValueError)."""
        flows = self.flows
        if flow_ids:
            missing = [i for i in flow_ids if i not in self._by_id]
            if missing:
                raise ValueError(f"no flow {missing[0]} (the capture has flows 1..{len(self.flows)})")
            flows = [self._by_id[i] for i in flow_ids]
        return select_flows(flows, host, port, states)

    def to_pandas(self, what: str = "flows"):
        """The flows (one row per connection, the CSV's columns) or the transitions (one row per state
        change, with its flow's endpoints) as a pandas DataFrame, for notebooks. Needs pandas."""
        from .render import tabular
        return tabular.to_pandas(self, what)

    def summary(self) -> dict:
        i = self.info
        client, server, non_rfc = end_states(self.flows)    # (counted as themselves, named once each below)
        states_end = {"client": Counter({s.value: n for s, n in client.items()}),
                      "server": Counter({s.value: n for s, n in server.items()})}
        sev = Counter(a.severity for a in self.findings)
        out = {
            "records": i.records,
            "tcp_segments": i.tcp_segments,
            "skipped": dict(sorted(i.skipped.items())),
            "skipped_total": sum(i.skipped.values()),
            "checksums": dict(sorted(i.checksums.items())), "dropped_bad_checksum": getattr(self, "dropped_bad_checksum", 0),
            "flows": len(self.flows) + self.streamed + self.not_kept,
            "streamed": bool(self.streamed),
            "max_tracked": self.max_tracked,
            "evicted": dict(self.evicted),
            "not_kept": self.not_kept,
            "segments_after_eviction": self.after_eviction,
            "duration": (self.end - self.start) / NS if self.flows or i.records else 0.0,
            "first_ts": self.start / NS if i.first_ts is not None else None,
            "last_ts": self.end / NS if i.last_ts is not None else None,
            "truncated": i.truncated,
            "warnings": list(i.warnings) + self.clock_warnings(),
            "timestamps_backwards": self.clock.backwards_steps,
            "largest_backwards_step": self.clock.largest_step_ns / NS,
            "non_rfc_transitions": non_rfc,
            "states_at_end": {k: dict(sorted(v.items())) for k, v in states_end.items()},
            "findings_by_severity": dict(sev),
        }
        files = getattr(i, "files", None)
        if files:                      # several files read as one (tcpfsm.capture.multi): index -> file
            out["files"] = [{"path": f["path"], "first_index": f["first_index"], "records": f["records"],
                             "first_ts": None if f["first_ts"] is None else f["first_ts"] / NS,
                             "last_ts": None if f["last_ts"] is None else f["last_ts"] / NS} for f in files]
            out["overlaps"] = list(i.overlaps)
        return out

    def clock_warnings(self) -> list[str]:
        c = self.clock
        if not c.backwards_steps:
            return []
        return [f"timestamps stepped backwards {c.backwards_steps} time(s) (largest {c.largest_step_ns / NS:.6f} s);"
                f" states use a monotonic clock"]


# one tracked connection, measured: peak RSS (`/usr/bin/time -f %M`) of `tcpfsm analyze
# bench/out/flood_200000.pcap --format json -o /dev/null` (make bench's 200,000-SYN flood) with --max-tracked
# 51622 against 10000: 438,160 KB - 283,048 KB = 155,112 KB over 41,622 more connections, 3.73 KB each
# (flow, two endpoint machines, transitions, path-health state, pile and timer entries, its output record),
# rounded up. 2026-12-07, compact connection records (it was 4.54 KB before them, same runs, same machine).
TRACKED_BYTES = 3800
TABLE_BUDGET = 128 << 20        # the connection table's share of memory by default (less on small machines)


def default_max_tracked() -> int:
    """The default cap on connections tracked at once: the table may use an eighth of a GiB, or an eighth of
    the memory available now if that is less, at ~3.8 KB a connection (about 35,000 on a machine with 1 GiB
    free or more); never below 10,000. A spoofed flood of 20,000 SYNs a second needs 40,000 (two seconds of
    attempts, see FlowTable.enforce_cap) to keep the uncapped run's findings. Over it, half-open attempts are evicted and counted (see FlowTable.enforce_cap)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    budget = TABLE_BUDGET if avail is None else min(TABLE_BUDGET, avail // 8)
    return max(10_000, budget // TRACKED_BYTES)


@contextmanager
def gc_paused():
    """The analysis allocates millions of long-lived, acyclic objects (flows, endpoints, transitions): the
    cyclic collector would rescan them over and over (~30 % of the run) and can reclaim nothing; reference
    counting frees evicted flows. Paused for the analysis, restored after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _without_gc(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with gc_paused():
            return fn(*args, **kwargs)
    return call


@_without_gc
def analyze(path: str | list[str], profile: str | TimerProfile = "linux", thresholds: Thresholds | dict | None = None,
            timers: dict | None = None, batch_size: int = 16384, end: str | float | None = None,
            stream: bool = False, on_flow=None, max_flows: int | None = None, progress=None,
            engine: str = "fast", zeek: bool = False, verify_checksums: bool = False,
            zeek_ignore_checksums: bool = False, capture_point: str = "auto", path_health: bool = True,
            keep_segments: bool = False) -> Analysis:
    """Read a capture (path or "-" for stdin; or a list of files, directories and globs read as one capture,
    see tcpfsm.capture.multi) and reconstruct every connection's states and findings.

    `end`: when the capture stopped, if later than its last packet (a quiet link: tcpdump ran on after
    the last segment). Timers fire and ages are measured up to it. Epoch seconds, ISO 8601 or +offset.

    `stream=True`: bounded memory. Connections that are finished (closed, timers done, silent for
    `stale_after`) are handed to `on_flow(flow)` with their findings and forgotten, so memory follows the
    connections alive, not the capture; `max_flows` caps the table (counted evictions). Findings are the
    same as without streaming; netstat and state counts then are not available.
    `progress(info, flows_tracked)` is called after every batch.
    `capture_point`: where the capture was taken on each connection's path ("client", "server",
    "middle"), or "auto" to estimate it per connection from the handshake (tcpfsm.fsm.machine: Observer). It
    decides when a segment seen at the tap reached, or left, each endpoint.
    `engine`: the decoder: "fast" (numpy, the default), "dpkt" (the reference decoder, ~30x slower) or
    "tshark" (Wireshark's dissectors through tshark); all give the same batches.
    `zeek=True`: also run Zeek's own connection logic (tcpfsm.zeek; its splitting and orientation): the
    result's `zeek_conns` feed conn.log output, and each flow's conn_state/history come from it. It costs
    about as much again as the analysis itself, so it is off unless asked for (not with `stream`).
    `verify_checksums=True`: segments whose TCP checksum is wrong (`csum` column 0) count as never received:
    they are dropped before the tracker (counted in the summary as `dropped_bad_checksum`). Off by default:
    with checksum offload a capture taken on the sending host shows every outgoing segment as bad.
    Checksums are counted either way (`info.checksums`, summary "checksums"). Zeek's view (`zeek=True`)
    sees every segment and follows Zeek's default, discarding bad ones with a C/c history letter;
    `zeek_ignore_checksums=True` is `zeek -C` (processed, no C).
    `path_health=True`: path health beside the states (tcpfsm.path): Wireshark's per-segment analysis, each
    flow's `path` facts and the findings that need them (not with `stream`: its conversations are kept to
    the end). `keep_segments=True` also keeps every segment's analysis for the `segments` view
    (`an.path_segments`)."""
    prof = profile if isinstance(profile, TimerProfile) else get_profile(profile, **(timers or {}))
    if isinstance(thresholds, dict) or thresholds is None:
        th = Thresholds().override(**(thresholds or {}))
    else:
        th = thresholds
    clock = time.perf_counter
    timings = {"read+decode": 0.0, "track": 0.0, "detect": 0.0}
    t0 = clock()
    cap = open_engine(engine, path)
    max_tracked = max_flows if max_flows is not None else default_max_tracked()
    table = FlowTable(prof, forget_finished=stream, max_flows=max_tracked, capture_point=capture_point,
                      attempts=not stream)
    # Findings are built as connections leave the table (evicted, or streamed out) and at the end, in both
    # modes: the same rules see the same connections, so both give the same findings.
    agg = Aggregator(th)
    # a half-open attempt silent this long has met the unanswered-SYN threshold and its SYN-cookie check
    settled_after = int((max(th.unanswered_syn_after, 1.5) + 0.5) * NS)
    if zeek and stream:
        raise ValueError("Zeek connection summaries need the whole capture: use them without --stream")
    zt = ZeekTracker(ignore_checksums=zeek_ignore_checksums) if zeek else None
    seqan = None
    if path_health and stream:
        cap.info.warnings.append("path health (per-segment analysis, flows' `path`, path findings) is not "
                                 "analysed when streaming: it needs the whole capture")
    if path_health and not stream:
        from .path.segments import SequenceAnalysis
        seqan = SequenceAnalysis(keep_rows=keep_segments, max_convs=max_tracked)   # memory bounded like the table
        timings["path"] = 0.0
    icmp_feed = None
    if getattr(cap, "icmp", None) is not None:          # ICMP errors quoting TCP (tcpfsm/path/icmp.py)
        from .path.icmp import IcmpFeed
        icmp_feed = IcmpFeed(cap.icmp, table)
    dropped_bad = 0
    handed = 0
    not_kept = 0
    last_sweep = 0

    def hand_out(flows: list[Flow], evicted: bool) -> None:
        """Connections leaving the table for good: their findings are final, the aggregates keep a summary.
        Streaming hands each to `on_flow`; a whole-capture analysis only lets go of evicted half-open attempts
        (`FlowTable.enforce_cap`), which are counted, not kept. An attempt evicted over the cap (`evicted`)
        is not remembered as its client's newest connection in either mode (Aggregator.add_flow `kept`): a
        flood's millions of spoofed sources would fill the reconnect index."""
        nonlocal handed, not_kept
        add, release, now = agg.add_flow, agg.piles.release, table.clock
        if not stream:                  # (a flood's evicted attempts, 16,000 a batch: the loop kept lean)
            attempts = []
            for f in flows:
                if type(f) is Attempt:
                    attempts.append(f)
                else:
                    if attempts:                # (in eviction order: the roll-ups keep their first)
                        agg.add_attempts(attempts, now, table.expand)
                        attempts = []
                    add(f, now, kept=False, listed=False)
            if attempts:
                agg.add_attempts(attempts, now, table.expand)
            agg.piles.release_all(flows)
            not_kept += len(flows)
            return
        for f in flows:
            add(f, now, kept=not (evicted and half_open(f)), listed=True)
            if on_flow is not None:
                on_flow(f)
            # evicted unfinished, no transition will take it out of a pile (a finished one holds none)
            release(f)
        handed += len(flows)

    # 16384 rows a batch: as fast as 65536 on the bench capture (9.7 s both), 80 MB less peak memory -- the
    # tracker's per-batch lists and prefix arrays (since replaced by a compiled walk), not the connections,
    # were the difference.
    def prepared(batches):
        """Each batch as read, as the tracker is to see it (bad checksums dropped when asked), and how many
        were dropped; path health has seen it (it needs nothing from the tracker), and the tracker's
        batch-only work is made (`FlowTable.prepare`)."""
        for full in batches:
            batch, dropped = full, 0
            if verify_checksums:
                good = full.cols["csum"] != 0
                if not good.all():
                    dropped = len(good) - int(good.sum())
                    batch = Batch({k: v[good] for k, v in full.cols.items()})
            if seqan is not None and len(batch):
                tp = clock()
                seqan.feed_batch(batch)
                timings["path"] += clock() - tp
            table.prepare(batch)            # (its order, keys and grouping: nothing the table's connections decide)
            yield full, batch, dropped

    # Read, decoded and path-analysed by a worker thread two batches ahead (capture/ahead.py): the compiled
    # kernels release the GIL, so on a second core they overlap the tracker. The reader's counters (cap.info)
    # may therefore run ahead of the batch in hand: they are read after the loop (and by `progress`).
    batches = read_ahead(prepared(cap.batches(batch_size)), READ_AHEAD)
    while True:
        t1 = clock()
        got = next(batches, None)
        t2 = clock()
        timings["read+decode"] += t2 - t1
        if got is None:
            break
        full, batch, dropped = got
        dropped_bad += dropped
        if len(batch):
            if icmp_feed is None:
                table.feed_batch(batch)
            else:                                       # ICMP errors go in between, in capture order
                for part in icmp_feed.feed(batch):
                    table.feed_batch(part)
        if zt is not None:
            zt.feed_batch(full)                         # Zeek applies its own checksum rule
        table.advance(table.clock)
        agg.piles.feed(ordered(table.drain()))
        t3 = clock()
        timings["track"] += t3 - t2
        if stream and table.clock - last_sweep >= NS:   # look for finished connections once a capture second
            last_sweep = table.clock
            hand_out(table.evict_finished(table.clock), False)
        evicted = table.enforce_cap(settled_after)
        if evicted:
            agg.piles.feed(ordered(table.drain()))      # what settling them decided, before they go
        hand_out(evicted, True)
        del evicted                                     # (not held through the next batch)
        timings["detect"] += clock() - t3
        if progress is not None:
            progress(cap.info, len(table.current))
    t3 = clock()
    if icmp_feed is not None:
        icmp_feed.flush()
    stop = cap.info.last_ts
    if end is not None:
        stop = max(stop or 0, parse_time(end, cap.info.first_ts or 0))
    table.finish(stop)
    agg.piles.feed(ordered(table.drain()))
    t4 = clock()
    timings["track"] += t4 - t3
    an = Analysis(cap.info, prof, th, table, stop, aggregator=agg, streamed=handed)
    an.dropped_bad_checksum = dropped_bad
    an.not_kept = not_kept
    if zt is not None:
        an.zeek_conns = zt.finish()
        names = cap.info.tunnels if hasattr(cap.info, "tunnels") else []
        for z in an.zeek_conns:             # Zeek names tunnel connections by uid; we name the encapsulation
            if z.tunnel_parents:
                z.tunnel_parents = [names[i] if i < len(names) else str(i) for i in z.tunnel_parents]
        for fid, summary in zeek_summary_for_flows(an.flows, an.zeek_conns).items():
            an.flow(fid).zeek = summary
    timings["detect"] += clock() - t4
    if seqan is not None:
        from .path import attach
        t5 = clock()
        an.icmp_errors = getattr(cap, "icmp", None)
        attach(an, seqan)
        timings["path"] += clock() - t5
    timings["total"] = clock() - t0
    an.timings = timings
    return an


def parse_state(spec) -> State:
    """A state in any spelling people type: RFC 9293 (SYN_RECEIVED, FIN_WAIT_1), netstat (SYN_RECV,
    FIN_WAIT1, CLOSE), ss (syn-recv, estab, fin-wait-1), any case."""
    if isinstance(spec, State):
        return spec
    key = str(spec).strip().upper().replace("-", "_")
    if key in _STATE_SPELLINGS:
        return _STATE_SPELLINGS[key]
    raise ValueError(f"unknown state {spec!r}: expected one of "
                     f"{', '.join(s.value for s in State)} (or netstat's / ss's spelling)")


def parse_states(specs) -> frozenset[State]:
    return frozenset(parse_state(s) for s in specs)


def check_port(port) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"bad port {port!r}: expected 0..65535")
    return port


def held_states(f: Flow) -> set[State]:
    """Every state either endpoint of `f` was in (its initial ones and each transition's target)."""
    out = {f.conn.client.initial, f.conn.server.initial}
    out.update(t.new for t in f.transitions if not t.retracted)
    return out


def _port_of(addr: str) -> int | None:
    tail = addr.rpartition(":")[2]
    return int(tail) if tail.isdigit() else None


def select_flows(flows: list[Flow], host: str | None = None, port: int | None = None, states=None) -> list[Flow]:
    """The flows among `flows` that Analysis.select's filters (host, port, states) choose, in their order."""
    if host is not None:
        flows = [f for f in flows if host in (f.client_ip, f.server_ip)]
    if port is not None:
        port = check_port(port)
        if host is None:
            flows = [f for f in flows if port in (f.client_port, f.server_port)]
        else:
            flows = [f for f in flows if (f.client_ip == host and f.client_port == port)
                     or (f.server_ip == host and f.server_port == port)]
    if states:
        want = parse_states(states)
        flows = [f for f in flows if want & held_states(f)]
    return flows


def socket_rows(occ: Occupancy, times: list[int], host: str | None, keep) -> list[list[Socket]]:
    """Per time, the sockets of `occ`'s connections open then (on `host`), those `keep` accepts."""
    out = []
    for t in times:
        rows = [Socket(iv.host, iv.local, iv.remote, iv.state, iv.flow, iv.alt) for iv in occ.at(t, host)]
        out.append(rows if keep is None else [r for r in rows if keep(r.local, r.remote, r.state)])
    return out


def snapshots(times: list[int], rows: list[list[Socket]], listeners: dict, host: str | None, keep,
              end: int) -> list[Snapshot]:
    """netstat's snapshots: per time its connection rows (gathered from any number of parts), the listeners
    seen by then ((host, local) -> first time) and netstat's order."""
    out = []
    for t, sockets in zip(times, rows):
        sockets = list(sockets)
        for (h, local), since in listeners.items():
            if (host is None or h == host) and since <= t <= end:
                r = Socket(h, *listener_row(h, local), State.LISTEN, None)
                if keep is None or keep(r.local, r.remote, r.state):
                    sockets.append(r)
        sockets.sort(key=lambda r: (r.host, r.state is not State.LISTEN, r.local, r.remote))
        out.append(Snapshot(t, sockets))
    return out


def socket_filter(port, states):
    """A predicate (local, remote, state) -> bool for netstat rows and state counts, or None for all."""
    if port is None and not states:
        return None
    if port is not None:
        port = check_port(port)
    want = parse_states(states) if states else None
    return lambda local, remote, state: ((port is None or port in (_port_of(local), _port_of(remote)))
                                         and (want is None or state in want))


def _spellings() -> dict[str, State]:
    from .fsm import NETSTAT_NAME, SS_NAME
    out = {}
    for s in State:
        for name in (s.value, NETSTAT_NAME[s], SS_NAME[s]):
            out[name.upper().replace("-", "_")] = s
    out["CLOSED"] = State.CLOSED
    return out


_STATE_SPELLINGS = _spellings()


ENGINES = ("fast", "dpkt", "tshark")


def open_engine(engine: str, path):
    """Open `path` with the named decoder; each returns the same Batches. `path` may also be a list of files,
    directories or globs: several files are read as one capture (tcpfsm.capture.multi)."""
    if not isinstance(path, str):
        from .capture.multi import open_many
        return open_many(path, functools.partial(open_engine, engine))
    if engine == "fast":
        return open_capture(path)
    if engine == "dpkt":
        from .capture.dpkt_decoder import open_capture_dpkt
        return open_capture_dpkt(path)
    if engine == "tshark":
        from .capture.tshark_engine import open_capture_tshark
        return open_capture_tshark(path)
    raise ValueError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")


_OFFSET = re.compile(r"^\+(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?$")


_I64_MAX = (1 << 63) - 1


def parse_time(spec: str | float | int, start_ns: int) -> int:
    """Epoch seconds, ISO 8601 (local time unless it says otherwise), HH:MM[:SS[.f]] on the capture's
    (local) day, or an offset from the capture's start like +12.5s, +500ms, +2m. Exact to the nanosecond:
    a time copied from the JSON output names the same instant. Held to the int64 nanoseconds every time
    column uses (an offset from a damaged capture's start near its end would not fit the engine's clock)."""
    return max(-_I64_MAX, min(_I64_MAX, _parse_time(spec, start_ns)))


def _parse_time(spec: str | float | int, start_ns: int) -> int:
    if isinstance(spec, bool):
        raise ValueError(f"bad time {spec!r}")
    if isinstance(spec, int):
        return spec * NS
    if isinstance(spec, float):
        spec = repr(spec)
    s = str(spec).strip()
    m = _OFFSET.match(s)
    if m:
        unit = {"ms": Decimal("0.001"), "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
        return start_ns + _ns(Decimal(m.group(1)) * unit, spec)
    if re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", s):
        return _ns(Decimal(s), spec)
    try:
        if re.match(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$", s):
            day = datetime.fromtimestamp(start_ns // NS).astimezone()
            parts = s.split(":")
            sec = Decimal(parts[2]) if len(parts) > 2 else Decimal(0)
            dt = day.replace(hour=int(parts[0]), minute=int(parts[1]), second=int(sec), microsecond=0)
            frac = sec - int(sec)
        else:
            iso = s.replace("Z", "+00:00")
            frac = Decimal(0)
            m2 = re.search(r"(\.\d+)", iso)
            if m2:                                   # keep the fraction exact (nanoseconds included)
                frac = Decimal(m2.group(1))
                iso = iso[:m2.start()] + iso[m2.end():]
            dt = datetime.fromisoformat(iso)
            if dt.tzinfo is None:
                dt = dt.astimezone()
        delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
        return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000 + _ns(frac, spec)
    except ValueError:
        raise ValueError(f"bad time {spec!r}: use epoch seconds, ISO 8601, HH:MM:SS or +12.5s") from None


def _ns(seconds: Decimal, spec) -> int:
    if not seconds.is_finite() or abs(seconds) > 10**11:
        raise ValueError(f"bad time {spec!r}: out of range")
    return int((seconds * NS).to_integral_value())
