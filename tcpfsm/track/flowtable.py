"""Connection identity: which connection each segment belongs to, and who is the client.

Owns the flow table (4-tuple -> current connection), splitting on 4-tuple
reuse (a SYN with a new ISN starts a new connection), role inference for
connections picked up midstream, the observer's monotonic clock and the
firing of timers before each segment, and the cap on connections tracked
(`enforce_cap`). It must not decide states: that is the `fsm` package's job,
fed through `Connection.feed`.

A connection that is one SYN so far (what a spoofed flood is made of) may be
held as an `Attempt` record instead of a Flow (`attempts=True`, the
whole-capture analysis): it is the flow it stands for -- expanded by the same
machine fed the same SYN the moment anything more happens to it -- and
evicted over the cap as the record (tests/test_attempts.py holds the two
tables equal on every capture and on floods through every eviction path).
"""
from __future__ import annotations

import itertools
import weakref
from operator import attrgetter, itemgetter
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from ..capture.batch import ACK, SYN, Batch
from .. import _kernels
from ..capture.keys import flow_key_array as _flow_key_array   # the compiled kernel
from ..fsm import (ROW_COLUMNS, Connection, Observer, State, TimerHeap, TimerProfile, Transition, fire_timers,
                   gather_rows, settle_all, walk_groups)

_runs = _kernels.load("tcpfsm.track._runs")
Attempt = _runs.Attempt              # a connection that is one SYN so far (see FlowTable(attempts=True))
Flow = _runs.Flow                    # one TCP connection: identity, roles, its pair of endpoint machines
FlowExtra = _runs.FlowExtra          # what few flows have (reuse of a TIME_WAIT, Zeek's view, tunnels)
ip_text, hostport, service_text = _runs.ip_text, _runs.hostport, _runs.service_text   # addresses as text

SERVICE_PORTS = _runs.SERVICE_PORTS        # ports that are services even above 1024 (role inference)
_NEVER = 1 << 62                   # (a due time no clock reaches)
_first = itemgetter(0)
_by_id = attrgetter("id")


@dataclass(slots=True)
class ClockStats:
    backwards_steps: int = 0
    largest_step_ns: int = 0


class FlowTable:
    """Assigns segments to connections and feeds their machines, in capture order."""

    VECTOR_MIN = 256        # smaller batches go segment by segment (the vectorized setup would cost more)

    def __init__(self, profile: TimerProfile, stale_after: float | None = None, reorder_window: float = 0.5,
                 max_flows: int | None = None, forget_finished: bool = False, vectorized: bool = True,
                 capture_point: str = "auto", attempts: bool = False):
        """`attempts`: hold a connection that is one SYN so far as an `Attempt`, not a Flow, until it is more
        (a whole-capture analysis: a spoofed flood's millions of attempts, evicted unanswered, never become
        flows; see `enforce_cap`)."""
        self.profile = profile
        Observer(capture_point)             # validates the name once, before any segment
        self.capture_point = capture_point
        self.current: dict[bytes, Flow] = {}
        # one object per recent address (`_runs.make_flow`): a flow's 16-byte addresses are slices of a batch, and
        # the connections of a host (a server's thousands) would each keep their own copy (49 bytes each)
        self._hosts: dict = {}
        # flows that left the table without being forgotten (`evict_finished` when not `forget_finished`): with
        # `current` and `_detached`, every flow not forgotten -- no index of all of them (~100 bytes a
        # connection, and two dict operations on it for each of a flood's attempts)
        self._retired: list[Flow] = []
        # Incremental use (live capture, --follow, streaming): flows whose transitions were not drained yet,
        # flows with a timer pending, the cap on tracked connections and what was evicted, by reason.
        self._touched: set[Flow] = set()
        self._detached: set[Flow] = set()   # flows a newer connection on the same 4-tuple replaced in `current`
        # the timers, (due, weak reference to the flow) earliest first (fsm TimerHeap): stale entries are allowed
        # (skipped when popped), and must not keep a forgotten flow alive until their due time
        self._timers = TimerHeap()
        self._timers_kept = 0               # entries left by the last compaction (`_compact_timers`)
        self.max_flows = max_flows
        self.forget_finished = forget_finished
        self.evicted: Counter = Counter()
        # 4-tuples of connections evicted over the cap before they finished (a set, bounded, oldest out):
        # their later segments belong to them, not to a new midstream connection; they are counted here
        # (a plain dict, in insertion order: `enforce_cap` drops the oldest in one pass after each eviction, so
        # there is no need for an OrderedDict's links, ~60 bytes a ghost)
        self._gone: dict[bytes, None] = {}
        self.after_eviction = 0
        self.created = 0                    # connections created so far: the next flow id
        self._pending: list | None = None   # flows created in a vectorized batch, numbered at its end
        self._reuse_fix: list = []
        self._row = 0
        self.vectorized = vectorized
        self.clock = 0                      # observer time: max timestamp so far (ns)
        self.last_raw = None
        self.clock_stats = ClockStats()
        self.reorder_window_ns = int(reorder_window * 1e9)
        # A non-SYN segment this long after a finished connection (both endpoints closed, timers done)
        # starts a new, midstream one; finished connections leave the table after it.
        self.stale_after_ns = int((stale_after if stale_after is not None else 10.0) * 1e9)
        # Attempts (`attempts=True`): those held, in creation order -- so their SYN_SENT timers' order: every
        # one's due time is its SYN's plus the same wait -- with the expanded and evicted ones left in until
        # they reach the front or a compaction (`_held` counts the held ones); those not yet drained; the wait
        self._lane: deque | None = deque() if attempts else None
        self._held = 0
        self._fresh: list[Attempt] = []
        self._syn_wait: int | None = None

    def prepare(self, batch: Batch) -> None:
        """What feeding `batch` takes from its rows alone -- its causal order (the rows put back in it), their
        flow keys and their grouping by connection -- made now and kept on the batch (`Batch.derived`), for
        `feed_batch` to find. It reads only the table's settings (`vectorized`, the reorder window), never
        its connections, so it may run in another thread while the table is fed earlier batches (the
        read-ahead worker does: tcpfsm/api.py); the compiled grouping releases the GIL."""
        if batch.derived is None:
            batch.derived = {}
        d = batch.derived
        if "tracker" in d:
            return
        c = batch.cols
        order = self._causal_order(c["ts"])
        if order is not None:
            c = {k: v[order] for k, v in c.items()}
        if self.vectorized and len(c["ts"]) >= self.VECTOR_MIN:
            keys = batch.flow_keys() if order is None else _flow_key_array(c)
            d["tracker"] = (c, keys, group_rows(keys[0], len(c["ts"])))
        else:
            d["tracker"] = (c, None, None)

    def feed_batch(self, batch: Batch) -> None:
        """Feed one batch of segments, in capture order (put back in timestamp order where the capture
        wrote them out of order). The vectorized path and the per-segment path give identical results."""
        self.prepare(batch)                         # (made ahead already, when a read-ahead worker did)
        c, keys, groups = batch.derived["tracker"]
        if groups is not None:
            self._feed_runs(c, keys, groups)
        else:
            self._feed_rows(c)
        tun = c.get("tunnel")
        if tun is not None and tun.any():            # rare: attach each encapsulation to its connection
            keys, _ = _flow_keys(c)
            for row in np.flatnonzero(tun).tolist():
                flow = self.current.get(keys[row])
                if type(flow) is Attempt:
                    flow = self._expand_held(flow)
                if flow is not None:
                    if flow.tunnels is None:
                        flow.tunnels = set()
                    flow.tunnels.add(int(tun[row]))

    def _feed_rows(self, c: dict) -> None:
        """The reference path: every segment in capture order, plain ones through `feed_plain`."""
        keys, lo_is_src = _flow_keys(c)
        names = ("ts", "index", "flags", "seq", "ack", "win", "plen", "wscale", "ip_len", "ipid")
        cols = [c[k].tolist() for k in names]
        src_l, dst_l, sport_l, dport_l = (c[k].tolist() for k in ("src", "dst", "sport", "dport"))
        current = self.current
        clock = self.clock
        last_raw = self.last_raw
        cs = self.clock_stats
        touched, timers = self._touched, self._timers
        for row, (key, lo_src, ts, idx, flags, seq, ack, win, plen, wscale, ip_len, ipid) in enumerate(
                zip(keys, lo_is_src, *cols)):
            if last_raw is not None and ts < last_raw:
                cs.backwards_steps += 1
                if last_raw - ts > cs.largest_step_ns:
                    cs.largest_step_ns = last_raw - ts
            last_raw = ts
            if ts > clock:
                clock = ts
            # Timers and states run on the monotonic clock so a timestamp stepping back cannot reorder them.
            flow = current.get(key)
            if type(flow) is Attempt:
                flow = self._expand_held(flow)
            if flow is not None and not flags & 7 and flow.conn.steady:
                flow.conn.feed_plain(clock, lo_src == flow.client_is_lo, flags, seq, ack, win, plen, ip_len, ipid)
                flow.last_ts = clock
                continue
            if flow is not None:
                flow.conn.expire(clock)
                if (flags & SYN) or flow.finished():
                    flow = self._maybe_split(flow, key, clock, idx, lo_src, flags, seq)
            if flow is None:
                if self._gone and self._late(key, flags):
                    continue
                flow = self._new_flow(key, clock, idx, src_l[row], sport_l[row], dst_l[row], dport_l[row], flags,
                                      lo_src)
            conn = flow.conn
            conn.feed(clock, idx, lo_src == flow.client_is_lo, flags, seq, ack, win, plen, wscale, ip_len, ipid)
            flow.last_ts = clock
            touched.add(flow)
            if not conn.steady:
                due = _due(conn)
                if due is not None and due != flow.timer_due:     # one heap entry per change, not per packet
                    flow.timer_due = due
                    timers.push(due, weakref.ref(flow))
        self.clock = clock
        self.last_raw = last_raw

    def _feed_runs(self, c: dict, keys: tuple[np.ndarray, np.ndarray], groups: tuple) -> None:
        """The vectorized path. Rows are grouped by connection (`_runs.group_rows`) and each group is walked
        in time order by the compiled `walk_groups` (tcpfsm/fsm/machine.py): a run of segments without SYN,
        FIN or RST on a connection both ends hold ESTABLISHED (`steady`) is counted in one call
        (`Connection.feed_plain_rows`), the others are fed one by one, and only the segments that may start
        or end a connection come back here (`decide`: `_maybe_split`, `_late`, `_new_flow`, as in
        `_feed_rows`)."""
        n = len(c["ts"])
        karr, lo = keys                 # (the rows' flow keys: Batch.flow_keys, or made for the reordered rows)
        ts = c["ts"].astype(np.int64)
        # the observer's clock and the backwards steps, in capture order
        clk = np.maximum.accumulate(np.maximum(ts, np.int64(self.clock)))
        prev = np.empty(n, np.int64)
        prev[0] = ts[0] if self.last_raw is None else self.last_raw
        prev[1:] = ts[:-1]
        back = prev - ts
        cs = self.clock_stats
        nback = int((back > 0).sum())
        if nback:
            cs.backwards_steps += nback
            cs.largest_step_ns = max(cs.largest_step_ns, int(back.max()))
        self.last_raw = int(ts[-1])
        self.clock = int(clk[-1])

        # the rows grouped by connection, groups in order of their first row, time order inside (`prepare`)
        _, _, perm, bounds = groups
        firsts = perm[bounds[:-1]]
        rows = np.empty((n, len(ROW_COLUMNS)), np.int64)
        gather_rows(rows, perm, clk, *(np.ascontiguousarray(x) for x in (
            c["index"], lo.view(np.uint8), c["flags"], c["seq"], c["ack"], c["win"], c["plen"], c["wscale"],
            c["ip_len"], c["ipid"])))
        gkeys = karr[firsts].tolist()
        flows0 = [self.current.get(k) for k in gkeys]
        self._pending, self._reuse_fix = [], []
        if self._lane is not None:
            self._lone_syns(c, lo, clk, gkeys, flows0, firsts, bounds)
        # endpoints of the rows a connection may start on (each group's first row, and any control row), as
        # Python values in one step each: a spoofed flood starts a connection on nearly every row
        start = (c["flags"] & 7) != 0
        start[firsts] = True
        cand = np.flatnonzero(start)
        src_b = c["src"][cand].tobytes()
        dst_b = c["dst"][cand].tobytes()
        at = dict(zip(cand.tolist(), range(len(cand))))
        sport_l, dport_l = c["sport"][cand].tolist(), c["dport"][cand].tolist()
        gone = self._gone
        # (what `_new_flow` passes, fixed for the batch: the vectorized walk makes its connections directly)
        new_flow, pending, current, detached, hosts = (_runs.new_flow, self._pending, self.current, self._detached,
                                                       self._hosts)
        profile, point = self.profile, self.capture_point

        def decide(gi: int, row: int, clock: int, idx: int, lo_src: bool, fl: int, seq: int,
                   flow: Flow | None) -> Flow | None:
            """The connection a segment that may start one belongs to (its timers fired already), or None
            when it is dropped (`_late`)."""
            key = gkeys[gi]
            self._row = row                   # capture order of a connection this segment may create
            if flow is not None:
                flow = self._maybe_split(flow, key, clock, idx, lo_src, fl, seq)
                if flow is not None:
                    return flow
            if gone and self._late(key, fl):
                return None
            j = at.get(row)
            if j is not None:
                r = j * 16
                return new_flow(-1, key, clock, idx, src_b[r:r + 16], sport_l[j], dst_b[r:r + 16], dport_l[j], fl,
                                lo_src, pending, row, current, detached, hosts, profile, point)
            # (a plain segment long after its connection finished: rare)
            return self._new_flow(key, clock, idx, bytes(c["src"][row]), int(c["sport"][row]), bytes(c["dst"][row]),
                                  int(c["dport"][row]), fl, lo_src)

        walk_groups(rows, bounds, perm, flows0, decide, self._touched, self._timers, self.current, Attempt)
        # number the new connections in capture order, as the per-segment path does
        self._pending.sort(key=_first)
        self.created = _runs.number(self._pending, self.created)       # (flows and attempts)
        for new, old in self._reuse_fix:
            new.reuse_of = old.id
        self._pending = None
        self._reuse_fix = []

    def _lone_syns(self, c: dict, lo: np.ndarray, clk: np.ndarray, gkeys: list, flows0: list, firsts: np.ndarray,
                   bounds: np.ndarray) -> None:
        """The attempts table (`attempts=True`) before a batch's walk: the held attempts its segments continue
        are expanded into their flows (`flows0`), and each group that is one SYN -- no ACK, FIN, RST or
        payload, not tunnelled -- on a 4-tuple with no connection becomes a held Attempt instead of a flow
        (numbered with the batch's new flows, in capture order); its `flows0` entry becomes the Attempt, which
        the walk puts in the table at its turn (the table's order, which breaks the cap's ties, is the
        groups'). A SYN on the 4-tuple of a connection evicted unfinished starts a new one (`_late`)."""
        if self._held:
            for g, f in enumerate(flows0):
                if type(f) is Attempt:
                    flows0[g] = self._expand_held(f)
        fl = c["flags"][firsts]
        one = (bounds[1:] - bounds[:-1] == 1) & ((fl & 0x17) == SYN) & (c["plen"][firsts] == 0)
        tun = c.get("tunnel")
        if tun is not None:
            one &= tun[firsts] == 0
        groups = np.flatnonzero(one)
        if not len(groups):
            return
        rows = firsts[groups]
        vals = np.empty((len(rows), len(_runs.HOLD_COLUMNS)), np.int64)
        for k, name in enumerate(_runs.HOLD_COLUMNS):
            vals[:, k] = rows if name == "row" else clk[rows] if name == "clock" else lo[rows] if name == "lo" \
                else c[name][rows]
        src_b, dst_b = c["src"][rows].tobytes(), c["dst"][rows].tobytes()
        if self._syn_wait is None:               # the SYN_SENT wait, read once off the machine itself
            first = vals[0].tolist()
            a = Attempt(gkeys[int(groups[0])], *first[1:11], src_b[:16], first[11], dst_b[:16], first[12], 0)
            due = self.expand(a).conn.next_deadline()
            self._syn_wait = _NEVER if due is None else due - a.ts
        self._held += _runs.hold_lone_syns(groups, vals, src_b, dst_b, gkeys, flows0, self._gone, self._pending,
                                           self._lane, self._fresh, self._syn_wait)

    def expand(self, a: Attempt) -> Flow:
        """The Flow an attempt stands for: a new connection's machine fed its SYN, as the walk would have.
        Not tracked: `_expand_held` puts it in the attempt's place; the aggregator asks for it when an evicted
        attempt needs the full per-flow rules (Aggregator.add_attempts)."""
        flow = self._make_flow(a.id, a.ts, a.packet, a.client_raw, a.client_port, a.server_raw, a.server_port, False,
                               a.lo_src)
        conn = flow.conn
        conn.start(a.ts, True, a.flags)
        conn.feed(a.ts, a.packet, True, a.flags, a.seq, a.ack, a.win, 0, a.wscale, a.ip_len, a.ipid)
        return flow

    def _expand_held(self, a: Attempt) -> Flow:
        """A held attempt becomes its flow in the table (its place in `current` and `flows` kept), with the
        timer and the drain state the flow would have had all along."""
        if a.fate == 1:
            return a.flow
        flow = self.expand(a)
        self.current[a.key] = flow
        a.fate, a.flow = 1, flow
        self._held -= 1
        if a.drained:
            flow.emitted = len(flow.conn.transitions)
        else:
            self._touched.add(flow)
        due = flow.conn.next_deadline()
        flow.timer_due = due
        if due is not None:
            self._timers.push(due, weakref.ref(flow))
        return flow

    def _expand_due(self, now: int) -> None:
        """Held attempts whose SYN_SENT timer is due by `now` become flows, for `advance` to fire it."""
        lane = self._lane
        while lane:                              # (bounded: each turn pops one)
            a = lane[0]
            if a.fate:
                lane.popleft()
            elif a.due <= now:
                lane.popleft()
                self._expand_held(a)
            else:
                break
        if len(lane) > 2 * self._held + 4096:    # expanded and evicted ones behind a held one: let them go
            self._lane = deque(a for a in lane if not a.fate)

    def _late(self, key: bytes, flags: int) -> bool:
        """A segment on the 4-tuple of a connection evicted before it finished: counted as that connection's,
        never a new midstream one. Only a SYN without ACK starts a new connection there."""
        if key not in self._gone:
            return False
        if flags & SYN and not flags & ACK:
            del self._gone[key]
            return False
        self.after_eviction += 1
        return True

    def causal_order(self, ts: np.ndarray) -> np.ndarray | None:
        """The order `feed_batch` puts a batch's rows in before feeding them (None: as they are). Public for
        tcpfsm.distributed, which counts the clock's backwards steps of files it does not feed here."""
        return self._causal_order(ts)

    def _causal_order(self, ts: np.ndarray) -> np.ndarray | None:
        """Capture order, except that records stamped slightly earlier than one before them are put back in
        timestamp order (multi-CPU capture writes them out of order; their stamps are right). A record that
        steps back by more than `reorder_window` is a clock step, not reordering: it keeps its place and the
        monotonic clock absorbs it. Reordering stays inside one batch."""
        if len(ts) < 2 or not (ts[1:] < ts[:-1]).any():
            return None
        runmax = np.maximum.accumulate(ts)
        key = np.where(runmax - ts > self.reorder_window_ns, runmax, ts)
        return np.argsort(key, kind="stable")

    def _maybe_split(self, flow: Flow, key: bytes, ts: int, idx: int, lo_src: bool, flags: int,
                     seq: int) -> Flow | None:
        """Return the flow this segment belongs to, or None when it starts a new connection."""
        conn = flow.conn
        if not flags & SYN:
            # a late segment shortly after the close belongs to the old connection
            return None if ts - flow.last_ts > self.stale_after_ns and flow.finished() else flow
        from_client = lo_src == flow.client_is_lo
        if conn.continues(from_client, flags, seq):
            return flow             # its handshake's SYN+ACK, a retransmitted SYN, a simultaneous open
        if flags & ACK:
            return None             # a SYN+ACK with a new ISN after the connection finished
        # A new ISN on this 4-tuple: a new connection. If an endpoint still holds TIME_WAIT, the
        # kernel accepts the SYN and drops the TIME_WAIT (the time_wait_reuse finding).
        new = self._new_flow(key, ts, idx, *flow.endpoints(from_client), flags, lo_src)
        tw = conn.reuse(ts, idx, to_client=not from_client)
        if tw is not None:
            new.reuse_of, new.reuse_ts, new.reuse_packet, new.reuse_endpoint = flow.id, ts, idx, tw.role
            if flow.id < 0:
                self._reuse_fix.append((new, flow))
            self._touched.add(flow)             # the old connection changed too: drain() must see it
        return new

    def _new_flow(self, key: bytes, ts: int, idx: int, src: bytes, sport: int, dst: bytes, dport: int,
                  flags: int, lo_src: bool) -> Flow:
        """The connection this segment starts on `key`, made and tracked (`_runs.new_flow`: roles, machine,
        the table's entry)."""
        if self._pending is None:
            self.created += 1
            fid = self.created
        else:
            fid = -1                         # numbered at the end of the batch, in capture order
        return _runs.new_flow(fid, key, ts, idx, src, sport, dst, dport, flags, lo_src, self._pending, self._row,
                              self.current, self._detached, self._hosts, self.profile, self.capture_point)

    def _make_flow(self, fid: int, ts: int, idx: int, client: bytes, cport: int, server: bytes, sport: int,
                   inferred: bool, client_is_lo: bool) -> Flow:
        """A new connection's Flow and machine, not yet started or tracked."""
        return _runs.make_flow(fid, ts, idx, client, cport, server, sport, inferred, client_is_lo, self._hosts,
                               self.profile, self.capture_point)

    @property
    def flows(self) -> list[Flow]:
        """Every flow not forgotten, in creation (id) order (held attempts expanded first)."""
        if self._held:
            self._expand_all()
        return sorted(itertools.chain(self.current.values(), self._detached, self._retired), key=_by_id)

    def icmp_error(self, key: bytes, lo_src: bool, ts: int, packet: int, seq: int, cause: str) -> Flow | None:
        """An ICMP error quoting a segment of the connection `key` that its lower side (`lo_src`) or upper
        side sent: handed to that connection's machine (Connection.icmp_error decides). Which errors are
        given is tcpfsm/path/icmp.py's choice. Returns the flow, or None when the 4-tuple is not tracked."""
        flow = self.current.get(key)
        if flow is None:
            return None
        if type(flow) is Attempt:
            flow = self._expand_held(flow)
        if flow.conn.icmp_error(max(ts, self.clock), packet, lo_src == flow.client_is_lo, seq, cause):
            self._touched.add(flow)
        return flow

    def finish(self, end_ts: int | None = None) -> None:
        """Fire every timer due by the end of the capture."""
        end = max(self.clock, end_ts or 0)
        self._expand_all()
        settle_all(self.flows, end, self._touched)
        self._timers.clear()

    def _expand_all(self) -> None:
        if self._lane is not None:
            for a in self._lane:
                if not a.fate:
                    self._expand_held(a)
            self._lane.clear()

    # -- incremental use: live capture, --follow, streaming ------------------------------------------------
    def advance(self, now: int) -> None:
        """Fire every timer due by `now` (ns) on every tracked flow. Live mode calls this with the wall clock:
        TIME_WAIT expires and retries run out while no packet arrives."""
        if now > self.clock:
            self.clock = now
        if self._lane:
            self._expand_due(now)
        if len(self._timers) > 2 * self._timers_kept + 4096:
            self._compact_timers()
        fire_timers(self._timers, now, self._touched)

    def _compact_timers(self) -> None:
        """Drop the heap entries that can change nothing: those of forgotten flows, and those of connections
        both ends hold ESTABLISHED (`steady`), which the handshake left behind (a SYN's retry timer) -- a
        steady connection has no state timer, and the tracker pushes a new entry when it leaves that state.
        Without this, 200,000 connections that stay open keep one or two stale entries each until their old
        due times (minutes of capture time). Run when the heap doubled since the last compaction: amortised
        O(1) a push."""
        def keep(ref) -> bool:
            flow = ref()
            if flow is None:
                return False
            if flow.conn.steady:
                flow.timer_due = None
                return False
            return True
        self._timers.keep_if(keep)
        self._timers_kept = len(self._timers)

    def drain(self) -> list[tuple[Flow, Transition]]:
        """Transitions made since the last call, with their flows, each flow's in its order; the flows in no
        particular order (every consumer sorts them by tcpfsm.detect.piles.ordered, one sort)."""
        out = []
        add = out.append
        if self._fresh:
            for a in self._fresh:               # attempts: their one transition, the SYN (an expanded one's is
                if a.fate != 1:                 # its flow's, below)
                    add((a, a))
                    a.drained = True
            self._fresh = []
        _runs.drain_touched(self._touched, out)
        self._touched.clear()
        return out

    def evict_finished(self, now: int) -> list[Flow]:
        """Connections finished (both endpoints closed, no timer pending) and silent for `stale_after`: a
        segment for them now would start a new connection anyway, so they leave the table (and `flows` too
        when `forget_finished`: bounded memory). Returned oldest first, to be emitted before they go."""
        cutoff = now - self.stale_after_ns
        gone = [(k, f) for k, f in self.current.items() if f.last_ts <= cutoff and f.finished()]
        for k, f in gone:
            del self.current[k]
        flows = [f for _, f in gone]
        done = [f for f in self._detached if f.last_ts <= cutoff and f.finished()]
        self._detached.difference_update(done)
        flows += done
        self.evicted["finished"] += len(flows)
        if not self.forget_finished:
            self._retired.extend(flows)
        return sorted(flows, key=lambda f: f.last_ts)

    def enforce_cap(self, settled_after: int = 0) -> list[Flow]:
        """Keep at most `max_flows` connections tracked. Over the cap, a tenth of them is dropped: finished
        ones first, then handshakes that never completed (what a SYN flood with spoofed sources creates),
        then the longest idle. Every eviction is counted by reason in `evicted`. Returns the flows that left
        `flows` too, to be summarised before they go: all of them when `forget_finished` (streaming).

        Without `forget_finished` (the whole capture kept for netstat and timelines) only half-open
        attempts are evicted, and they leave `flows` as well: counted (`evicted["half_open"]`) and summarised
        by the caller, not kept -- that is what bounds a spoofed flood's memory. Other connections stay
        tracked over the cap: evicting them would change the answers of a whole-capture analysis.
        `settled_after` (ns): an attempt silent this long has had its short timers fire (SYN-cookie check,
        the unanswered-SYN threshold), so summarising it now gives the findings the whole capture would;
        those go first, and younger ones only when that is not enough and attempts fill over half the cap
        (`evicted["forced"]`: their findings may differ from an uncapped run, and the summary says how many)."""
        if self.max_flows is None or len(self.current) <= self.max_flows:
            return []
        excess = len(self.current) - int(self.max_flows * 0.9)

        young = self.clock - settled_after       # a handshake silent less long may still be under way

        def klass(f):
            if f.finished():
                return 0
            if half_open(f) and (f.last_ts <= young or flood):
                return 1
            return 2

        def rank(item):
            return (klass(item[1]), item[1].last_ts)

        if self.forget_finished:
            # as below: handshakes under way go early only when attempts fill over half the cap (a flood)
            flood = sum(1 for f in self.current.values() if half_open(f)) > self.max_flows // 2
            # the `excess` first by `rank`, ties in table order (numpy's lexsort is stable): two columns, not
            # a (key, flow) pair and a rank tuple per connection (~13 MB at 100,000, with the table at its fullest)
            keys, tracked = list(self.current), list(self.current.values())
            n = len(tracked)
            order = np.lexsort((np.fromiter((f.last_ts for f in tracked), np.int64, n),
                                np.fromiter((klass(f) for f in tracked), np.int8, n)))
            victims = order[:excess].tolist()
            del order
        else:
            # The `excess` attempts silent longest (ties in table order), and whether attempts fill over half
            # the cap. This runs once a batch over the whole table (a flood's 50,000 connections), so the
            # table is walked oldest first, testing half_open only until both are known: for a flood, the
            # victims and half the cap, not every connection.
            keys, tracked = list(self.current), list(self.current.values())
            victims, attempts = _runs.oldest_half_open(tracked, excess, self.max_flows // 2, half_open)
            # A handshake still in progress (younger than `settled_after`) is forced out only when attempts
            # are what fills the table (over half of the cap: a flood); when established connections fill
            # it, evicting the few handshakes under way frees nothing that matters and loses connections
            # (their next segments would find them gone).
            if attempts <= self.max_flows // 2:
                victims = [i for i in victims if tracked[i].last_ts <= self.clock - settled_after]
        settled = self.clock - settled_after

        def reason_of(k, f):
            reason = ("finished", "half_open", "idle")[rank((k, f))[0]]
            if reason != "finished" and f.last_ts > settled and half_open(f):
                reason = "forced"                # a handshake maybe still under way
            return reason

        reasons = {}
        gone, limit = self._gone, max(2 * self.max_flows, 100_000)
        out, held = _runs.evict(keys, tracked, victims, self.clock, settled, self.current, gone, self._detached, self._touched, reasons,
                                reason_of if self.forget_finished else None)
        self._held -= held
        del keys, tracked
        over = len(gone) - limit
        if over > 0:                            # the oldest out (a dict iterates in insertion order)
            for k in list(itertools.islice(gone, over)):
                del gone[k]
        self.evicted.update(reasons)
        if len(self._timers) > 2 * len(self.current) + 1024:   # entries of evicted flows wait for their due
            self._timers.keep_if(_alive)                         # time: drop them, or they outnumber the live
        return out


def _alive(ref) -> bool:
    """A timer entry whose flow is not forgotten."""
    return ref() is not None


_HALF_CLIENT = (State.SYN_SENT, State.CLOSED)
_HALF_SERVER = (State.SYN_RECEIVED, State.LISTEN, State.CLOSED)


def half_open(f: Flow) -> bool:
    """A handshake that never completed: the client never got past SYN_SENT, the server never past
    SYN_RECEIVED (a spoofed SYN flood is made of these)."""
    if type(f) is Attempt:
        return True
    c, s = f.conn.client, f.conn.server
    return c.state in _HALF_CLIENT and s.state in _HALF_SERVER and not c.payload and not s.payload


def _due(conn: Connection) -> int | None:
    return conn.next_deadline()


def group_rows(karr: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by flow key, groups in order of their first row (the compiled `_runs.group_rows`): each
    row's group, each group's first row, the rows group by group (capture order inside), and the groups'
    bounds in that order (G + 1 of them). Public for tcpfsm.path.segments, which numbers 4-tuples alike."""
    grow = np.empty(n, np.int64)
    first = np.empty(n, np.int64)
    perm = np.empty(n, np.int64)
    bounds = np.empty(n + 1, np.int64)
    slots = np.full(1 << (2 * n).bit_length(), -1, np.int64)
    G = _runs.group_rows(karr.view(np.uint8).reshape(n, -1), grow, first, perm, bounds, slots)
    return grow, first[:G], perm, bounds[:G + 1]


def _flow_keys(c: dict[str, np.ndarray]) -> tuple[list[bytes], list[bool]]:
    """One bytes key per row, the same for both directions, and whether the row's source is the lower side
    (as Python lists, for the per-segment loop)."""
    key, lo = _flow_key_array(c)
    return key.tolist(), lo.tolist()
