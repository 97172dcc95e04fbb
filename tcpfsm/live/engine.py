"""The live loop: packets in, events out, timers on the clock even when no packet comes.

Each turn: read what the source has (waiting at most one tick), feed the flow table, advance its timers
to "now", hand out the transitions made, re-run the per-flow rules of the flows that changed and of the
flows whose age just crossed a threshold (a heap of due times, so a stuck CLOSE_WAIT is reported the
moment it becomes stuck), and every few seconds the aggregate rules and a stats event. Finished flows
are evicted after a linger (a `flow_end` event) so memory stays bounded; the table is capped.

"Now" is the wall clock for a live capture (minus a small lag, so a packet stamped just before the tick
but read just after it is not overtaken by a timer). When following a file or a pipe it is the capture's
clock carried forward by the wall time elapsed since its last packet: a historical file's timers then run
from its last packet instead of firing all at once.
"""
from __future__ import annotations

import heapq
import signal
import threading
import time
from collections import Counter, deque
from operator import attrgetter

import numpy as np

from ..api import Analysis
from ..detect.aggregate import Aggregator
from ..detect.piles import ordered
from ..detect.rules import Thresholds, flow_findings
from ..fsm import State, TimerProfile
from ..track.flowtable import Flow, FlowTable, half_open

NS = 1_000_000_000
# what the per-second scans read of every tracked connection, by C-level getters
_CLIENT_STATE, _SERVER_STATE = attrgetter("conn.client.state"), attrgetter("conn.server.state")
_CLIENT_RETRANS = attrgetter("conn.client.retrans_unanswered")
_SERVER_RETRANS = attrgetter("conn.server.retrans_unanswered")
_LAST_TS = attrgetter("last_ts")

# states whose findings depend on how long an endpoint has held them -> threshold name
_AGING = {State.SYN_SENT: "unanswered_syn_after", State.SYN_RECEIVED: "half_open_after",
          State.CLOSE_WAIT: "stuck_close_wait", State.FIN_WAIT_2: "lingering_fin_wait_2",
          State.FIN_WAIT_1: "fin_wait_1_unacked", State.CLOSING: "fin_wait_1_unacked",
          State.LAST_ACK: "last_ack_unacked"}


class LiveAnalysis(Analysis):
    """The end-of-run analysis, built like `analyze --stream`: the connections evicted during the run went
    through the same `Aggregator` (their findings are in the ranked list; `streamed` counts them), the ones
    still tracked are analysed at the end. The summary also says what the capture lost."""

    def __init__(self, *a, source_stats=None, states_evicted=None, **kw):
        self.source_stats = source_stats or {}
        self.states_evicted = states_evicted or {"client": Counter(), "server": Counter()}
        super().__init__(*a, **kw)

    def summary(self) -> dict:
        s = super().summary()
        for role in ("client", "server"):
            c = Counter(s["states_at_end"][role])
            c.update(self.states_evicted[role])
            s["states_at_end"][role] = dict(sorted(c.items()))
        s["capture_drops"] = self.source_stats
        return s


class Latency:
    """Packet timestamp -> event emission delay (ms), over packet-caused transitions."""

    def __init__(self, keep: int = 20000):
        self.samples: deque = deque(maxlen=keep)
        self.count = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        self.samples.append(ms)
        self.count += 1
        if ms > self.max:
            self.max = ms

    def add_since(self, wall_ns: int, ts_ns: list) -> None:
        """One sample per packet timestamp in `ts_ns` (a turn's transitions), all emitted at `wall_ns`."""
        n = len(ts_ns)
        if not n:
            return
        keep = self.samples.maxlen
        ms = (wall_ns - np.array(ts_ns[-keep:] if n > keep else ts_ns, np.int64)) / 1e6
        self.samples.extend(ms.tolist())
        self.count += n
        self.max = max(self.max, float(ms.max()))

    def record(self) -> dict:
        if not self.samples:
            return {"count": 0}
        xs = sorted(self.samples)
        q = lambda p: round(xs[min(len(xs) - 1, int(p * len(xs)))], 3)     # noqa: E731
        return {"count": self.count, "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(self.max, 3)}


class Engine:
    AGG_SLICE = 0.02                # seconds of the aggregate pass per turn at most (it resumes next turn)
    PASS_SLICE = 20_000             # tracked flows read per turn by the per-second passes
    # Turns start at least this far apart. A turn costs ~100 us whatever it carries (timers, drain, findings,
    # a write): at 50 k packets/s from a pipe fed packet by packet that was a turn per handful of packets and
    # most of a core; 10 ms makes batches of hundreds, and adds at most 10 ms to an event's latency
    MIN_TURN = 0.01
    # A changed connection's rules run at most once per EVAL_GAP: a connection whose packets straddle many
    # turns (10 ms each) was evaluated at each of them (~7 times for a 9-packet connection at 100 k/s, a
    # quarter of the process). A finding is then reported at most this much later than before
    EVAL_GAP_NS = 50_000_000

    def __init__(self, source, profile: TimerProfile, th: Thresholds, sink, *, clock: str = "wall",
                 tick: float = 0.2, stats_every: float = 5.0, agg_every: float = 5.0, linger: float | None = None,
                 max_flows: int | None = 200_000, lag: float = 0.25, count: int | None = None,
                 capture_point: str = "auto",
                 duration: float | None = None, keep_findings: int = 20000):
        self.source = source
        self.profile = profile
        self.th = th
        self.sink = sink
        self.clock_mode = clock
        self.tick = tick
        self.stats_every = stats_every
        self.agg_every = agg_every
        self.linger = linger
        self.lag_ns = int(lag * NS)
        self.count = count
        self.duration = duration
        self.table = FlowTable(profile, stale_after=linger, max_flows=max_flows, forget_finished=True,
                               capture_point=capture_point)
        self.stop_event = threading.Event()
        self.stop_reason = ""
        self._emitted: dict[int, set] = {}          # flow id -> (kind, endpoint) already emitted
        self._agg_emitted: dict[tuple, int] = {}     # (kind, host, service) -> count emitted
        self._due: list = []                         # heap of (due ns, seq, flow)
        self._seq = 0
        self._evaluated: dict[int, int] = {}         # tracked flow id -> when its rules last ran (or it came), ns
        self._later: list = []                       # heap of (due ns, seq, flow): changed, evaluated at due
        self._waiting: set = set()                   # ids of the flows in _later
        self._agg_job: list | None = None            # the aggregate pass in progress: [flows, position, scratch]
        self._agg_took = 0.0
        self.agg = Aggregator(th)                    # evicted connections end here (as in analyze --stream)
        self.handed = 0
        self.kept: deque = deque(maxlen=keep_findings)   # evicted flows with findings, for the final report
        self.states_evicted = {"client": Counter(), "server": Counter()}
        self.recent: deque = deque(maxlen=50)        # (flow or None, Finding) newest last, for the dashboard
        self.latency = Latency()
        self.started_wall = time.time()
        self._anchor = None                          # (capture ns, wall ns) for the follow clock
        self._pps = 0.0
        self._last_rate = (time.monotonic(), 0)
        self.now = time.time_ns()

    # -- the clock ----------------------------------------------------------------------------------
    def _now(self) -> int:
        # whole microseconds, like the packets' times: a time the table stamps with "now" (a timer, or a packet
        # older than the clock when the analysis runs behind) is then written by the emitter's fast path
        wall = time.time_ns() // 1000 * 1000
        if self.clock_mode == "wall":
            return wall - self.lag_ns
        last = self.source.info.last_ts
        if last is None:
            return self.table.clock
        if self._anchor is None or last > self._anchor[0]:
            self._anchor = (last, wall)
        return self._anchor[0] + max(0, wall - self._anchor[1] - self.lag_ns)

    @property
    def flows_total(self) -> int:
        return getattr(self.table, "created", 0)

    # -- one turn -----------------------------------------------------------------------------------
    def _feed(self, batches) -> None:
        table = self.table
        for b in batches:
            table.feed_batch(b)

    def _emit_transitions(self) -> None:
        wall = time.time_ns()
        items = ordered(self.table.drain())
        self.agg.piles.feed(items)
        # a packet stamped before this run began (`--follow` on a file that already held it) has no
        # processing latency to measure: wall - ts would be the capture's age
        since = int(self.started_wall * 1e9) - NS
        self.latency.add_since(wall, [t.ts for _, t in items if t.packet is not None and t.ts >= since])
        self.sink.transitions(items)

    def _schedule(self, flow: Flow) -> None:
        th = self.th
        for ep in (flow.conn.client, flow.conn.server):
            name = _AGING.get(ep.state)
            if name is not None:
                due = ep.since + int(getattr(th, name) * NS) + 1
                if due > self.now:
                    self._seq += 1
                    heapq.heappush(self._due, (due, self._seq, flow, ep, ep.state, ep.since))

    def _evaluate(self, flow: Flow, now: int) -> None:
        self._evaluated[flow.id] = now
        found = flow_findings(flow, now, self.th)
        extra = [a for a in flow.anomalies if a.kind == "vanished_peer" and a.flows]   # from the reconnect rule
        flow.anomalies = found + [a for a in extra if not any(b.kind == a.kind for b in found)]
        seen = self._emitted.setdefault(flow.id, set())
        for a in flow.anomalies:
            key = (a.kind, a.endpoint)
            if key not in seen:
                seen.add(key)
                self.recent.append((flow, a))
                self.sink.anomaly(flow, a, now)

    def _findings(self, dirty: set, now: int) -> None:
        """The per-flow rules on the flows that changed, each at most once per EVAL_GAP: one evaluated (or
        new) less than that ago waits for the rest of it (in `_later`), however many turns touch it meanwhile."""
        evaluated, later, waiting, gap = self._evaluated, self._later, self._waiting, self.EVAL_GAP_NS
        for flow in dirty:
            last = evaluated.get(flow.id)
            if last is None:                # new: its first packets rarely make a finding; its rest come soon
                last = evaluated[flow.id] = now
            if now - last < gap:
                if flow.id not in waiting:
                    waiting.add(flow.id)
                    self._seq += 1
                    heapq.heappush(later, (last + gap, self._seq, flow))
                continue
            self._evaluate(flow, now)
            self._schedule(flow)
        while later and later[0][0] <= now:
            _, _, flow = heapq.heappop(later)
            waiting.discard(flow.id)
            if flow.id in evaluated:                                  # still tracked (evicted ones are dropped)
                self._evaluate(flow, now)
                self._schedule(flow)
        # a state held long enough for its rule: evaluated unless the flow is gone (evicted), its rules ran since
        # the time came, or the endpoint left that state before it (the state's rule cannot fire on a span
        # shorter than its threshold; whatever the leaving changed was evaluated then)
        due = self._due
        while due and due[0][0] <= now:
            t, _, flow, ep, state, since = heapq.heappop(due)
            if flow not in dirty and evaluated.get(flow.id, t) < t and ep.state is state and ep.since == since:
                self._evaluate(flow, now)

    def _scan_steady(self, flows: list, now: int) -> set:
        """Steady (both ESTABLISHED) flows change no state on plain segments, but one side retransmitting
        into silence makes the vanished_peer rule true: find them among `flows` (a slice of the table)."""
        n = self.th.vanished_retrans_count
        if not flows:
            return set()
        # (columns read by C-level getters, compared by numpy; the retransmission counters, three attribute
        # steps each, only of the flows heard from in the last 2 s: most tracked ones are lingering in
        # TIME_WAIT or their linger. A Python step per tracked flow was ~0.1 s a second at 100,000 of them)
        last = np.fromiter(map(_LAST_TS, flows), np.int64, len(flows))
        recent = [flows[i] for i in np.flatnonzero(last > now - 2 * NS).tolist()]
        if not recent:
            return set()
        cr = np.fromiter(map(_CLIENT_RETRANS, recent), np.int64, len(recent))
        sr = np.fromiter(map(_SERVER_RETRANS, recent), np.int64, len(recent))
        tracked = self._evaluated                     # (one evicted since the pass began is done with)
        return {f for f in (recent[i] for i in np.flatnonzero((cr >= n) | (sr >= n)).tolist()) if f.id in tracked}

    def _pass_step(self, job: list) -> list:
        """The next slice of a pass over a snapshot of the table ([flows, position, ...]); the pass is done
        when the position reaches the end."""
        flows, pos = job[0], job[1]
        job[1] = pos + self.PASS_SLICE
        return flows[pos:pos + self.PASS_SLICE]

    def _aggregates(self, now: int, budget: float | None = None) -> bool:
        """The aggregate rules as of now: floods and scans over the connections still tracked (a scratch
        Aggregator) and over those already evicted (the run's Aggregator), state piles from the transitions
        followed so far, and the reconnect form of vanished_peer.

        The scratch pass walks every tracked connection (~4 us each, ~100,000 of them lingering at 10,000
        new connections a second): with a `budget` (seconds) it walks a snapshot of the table in slices, one
        per turn, so packets are not held behind it; returns True once the rules have run. A connection
        evicted before its slice is still indexed (it was tracked when the pass began) but gets no new
        per-flow finding (its flow_end is out)."""
        job = self._agg_job
        if job is None:
            job = self._agg_job = [list(self.table.current.values()), 0, Aggregator(self.th)]
        flows, pos, tmp = job
        t_end = None if budget is None else time.monotonic() + budget
        n = len(flows)
        while pos < 2 * n:                           # [0, n): index them all; [n, 2n): the reconnect rule
            stop = min(pos + 2000 - pos % 2000, n if pos < n else 2 * n)
            if pos < n:
                for f in flows[pos:stop]:
                    tmp._index(f)
            else:
                emitted, tracked = self._emitted, self._evaluated
                for f in flows[pos - n:stop - n]:
                    if f.id not in tracked:             # evicted since the pass began
                        continue
                    k = len(f.anomalies)
                    tmp._reconnect(f, now)
                    for a in f.anomalies[k:]:
                        seen = emitted.setdefault(f.id, set())
                        if (a.kind, a.endpoint) not in seen:
                            seen.add((a.kind, a.endpoint))
                            self.recent.append((f, a))
                            self.sink.anomaly(f, a, now)
            pos = job[1] = stop
            if t_end is not None and pos < 2 * n and time.monotonic() >= t_end:
                return False
        self._agg_job = None
        found = tmp._floods() + tmp._scans() + self.agg._floods() + self.agg._scans() + self.agg._piles(now)
        for a in found:
            key = (a.kind, a.host, a.service)
            prev = self._agg_emitted.get(key)
            if prev is None or a.count >= 2 * prev:
                self._agg_emitted[key] = a.count
                self.recent.append((None, a))
                self.sink.aggregate(a, now)
        return True

    def _evict(self, now: int) -> None:
        table = self.table
        finished = table.evict_finished(now)
        gone = finished + table.enforce_cap()
        for i, f in enumerate(gone):
            self._evaluate(f, now)
            self.sink.flow_end(f, now)
            self._emitted.pop(f.id, None)
            self._evaluated.pop(f.id, None)
            # an attempt evicted over the cap is not its client's newest connection (as in analyze)
            self.agg.add_flow(f, now, kept=i < len(finished) or not half_open(f), listed=True)
            self.agg.piles.release(f)
            self.handed += 1
            self.states_evicted["client"][f.conn.client.state.value] += 1
            self.states_evicted["server"][f.conn.server.state.value] += 1
            if any(a.severity != "info" for a in f.anomalies):
                self.kept.append(f)

    def stats_record(self, final: bool = False, held: Counter | None = None) -> dict:
        """The stats event's record; `held`: the endpoints' states counted already (by a pass in slices),
        else counted now."""
        t, n = time.monotonic(), self.source.info.records
        t0, n0 = self._last_rate
        if t - t0 >= 0.5:
            self._pps = (n - n0) / (t - t0)
            self._last_rate = (t, n)
        info = self.source.info
        if held is None:
            flows = self.table.current.values()
            held = Counter(map(_CLIENT_STATE, flows))
            held.update(map(_SERVER_STATE, flows))
        states = {st.value: k for st, k in held.items()}
        rec = {"packets": info.records, "tcp_segments": info.tcp_segments, "pps": round(self._pps, 1),
               "drops": self.source.stats(), "flows_tracked": len(self.table.current),
               "flows_total": self.flows_total, "evicted": dict(self.table.evicted),
               "endpoint_states": dict(sorted(states.items())), "latency_ms": self.latency.record(),
               "uptime": round(time.time() - self.started_wall, 3)}
        if final:
            rec["stop_reason"] = self.stop_reason
        return rec

    # -- run ----------------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        if not self.stop_event.is_set():
            self.stop_reason = reason
            self.stop_event.set()

    def run(self) -> LiveAnalysis:
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, lambda s, f: self.request_stop(signal.Signals(s).name))
        try:
            return self._loop()
        except BaseException:
            live = getattr(self.sink, "live", None)      # leave the terminal usable
            if live is not None:
                live.stop()
            raise
        finally:
            for sig, h in handlers.items():
                signal.signal(sig, h)

    def _loop(self) -> LiveAnalysis:
        src, table, sink = self.source, self.table, self.sink
        t_start = time.monotonic()
        next_stats = t_start + self.stats_every
        next_agg = t_start + self.agg_every
        next_sec = t_start + 1.0
        scan = census = None            # the passes in progress (see below)
        sink.start(self)
        turn = 0.0
        while not self.stop_event.is_set():
            # a turn right after another waits for the rest of MIN_TURN: what arrives meanwhile is read as one
            # batch (a pipe or a ring holds it), not as a turn per few packets
            wait = turn + self.MIN_TURN - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            turn = time.monotonic()
            try:
                batches = src.poll(self.tick)
            except InterruptedError:
                batches = []
            self._feed(batches)
            now = self._now()
            if self.clock_mode == "wall":
                # behind by more than the lag (this turn's newest packet is older than now): the clock follows
                # the packets, so the ones still queued are not overtaken by timers (they would be stamped
                # with the clock instead of their own time)
                newest = src.info.last_ts
                if batches and newest is not None and newest < now:
                    now = max(newest, table.clock)
            else:
                now = max(now, table.clock)
            self.now = now
            table.advance(now)
            dirty = set(table._touched)          # the flows the packets and the timers changed (drain empties it)
            self._emit_transitions()
            mono = time.monotonic()
            # the per-second passes over every tracked flow (the steady scan, the stats' state count) read
            # PASS_SLICE flows a turn: at 100,000 tracked flows a whole pass held the packets ~50 ms
            if mono >= next_sec and scan is None:
                scan = [list(table.current.values()), 0]
            if scan is not None:
                dirty |= self._scan_steady(self._pass_step(scan), now)
                if scan[1] >= len(scan[0]):
                    scan = None
            self._findings(dirty, now)
            if mono >= next_sec:
                next_sec = mono + 1.0
                self._evict(now)
            if mono >= next_agg:
                t0 = time.monotonic()
                if self._aggregates(now, budget=self.AGG_SLICE):
                    took = self._agg_took + time.monotonic() - t0
                    self._agg_took = 0.0
                    next_agg = time.monotonic() + max(self.agg_every, 10 * took)
                else:
                    self._agg_took += time.monotonic() - t0
            if mono >= next_stats and census is None:
                census = [list(table.current.values()), 0, Counter()]
            if census is not None:
                part = self._pass_step(census)
                census[2].update(map(_CLIENT_STATE, part))
                census[2].update(map(_SERVER_STATE, part))
                if census[1] >= len(census[0]):
                    src.refresh_stats()
                    sink.stats(self.stats_record(held=census[2]), now)
                    next_stats = mono + self.stats_every
                    census = None
            sink.tick(self)
            if self.count is not None and src.info.records >= self.count:
                self.request_stop("count")
            elif self.duration is not None and mono - t_start >= self.duration:
                self.request_stop("duration")
            elif getattr(src, "exhausted", False):
                self.request_stop("end of stream")
            elif getattr(src, "exited", False):
                self.request_stop("capture process exited")
        return self._finish()

    def _finish(self) -> LiveAnalysis:
        src, table, sink = self.source, self.table, self.sink
        batches = src.stop()
        self._feed(batches)
        end = self.now = max(self._now() if self.stop_reason != "end of stream" else 0, table.clock,
                             src.info.last_ts or 0)
        table.advance(end)
        dirty = set(table._touched)
        self._emit_transitions()
        for f in list(table.current.values()):
            self._evaluate(f, end)
        src.refresh_stats()
        an = LiveAnalysis(src.info, self.profile, self.th, table, end, aggregator=self.agg, streamed=self.handed,
                          source_stats=src.stats(), states_evicted=self.states_evicted)
        an.kept = list(self.kept)
        # per-flow findings as of the end (detect() re-ran the rules): any not emitted yet
        for f in table.flows:
            seen = self._emitted.setdefault(f.id, set())
            for a in f.anomalies:
                if (a.kind, a.endpoint) not in seen:
                    seen.add((a.kind, a.endpoint))
                    sink.anomaly(f, a, end)
        for f in sorted(table.flows, key=lambda f: f.last_ts):
            sink.flow_end(f, end)
        for a in an.findings:
            key = (a.kind, a.host, a.service)
            if self._agg_emitted.get(key) != a.count:
                self._agg_emitted[key] = a.count
                sink.aggregate(a, end)
        rec = self.stats_record(final=True)
        sink.final(an, rec, end)
        return an
