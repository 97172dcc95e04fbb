"""Connection identity: which connection each segment belongs to, and who is the client.

Owns the flow table (4-tuple -> current connection), splitting on 4-tuple
reuse (a SYN with a new ISN starts a new connection), role inference for
connections picked up midstream, the observer's monotonic clock and the
firing of timers before each segment. It must not decide states: that is the
`fsm` package's job, fed through `Connection.feed`.
"""
from __future__ import annotations

import heapq
import ipaddress
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..capture.batch import ACK, SYN, RST, Batch
from ..fsm import Connection, State, TimerProfile
from ..fsm.machine import Transition

# Ports that are services even when above 1024 (for midstream role inference).
SERVICE_PORTS = frozenset({
    1080, 1433, 1521, 2049, 2181, 2379, 3000, 3128, 3306, 3389, 5000, 5432, 5672, 5900, 6379, 6443, 8000,
    8008, 8080, 8081, 8443, 8888, 9000, 9042, 9090, 9092, 9200, 9300, 11211, 15672, 27017,
})
_MAPPED = b"\x00" * 10 + b"\xff\xff"


def ip_text(raw: bytes) -> str:
    """16-byte column value -> printable address (IPv4-mapped shown as IPv4)."""
    if raw[:12] == _MAPPED:
        return ".".join(str(b) for b in raw[12:])
    return str(ipaddress.IPv6Address(raw))


def hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(slots=True, eq=False)
class Flow:
    """One TCP connection: identity, roles, and its pair of endpoint machines."""

    id: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    role_inferred: bool
    conn: Connection
    first_ts: int
    last_ts: int
    first_packet: int
    client_raw: bytes = b""
    server_raw: bytes = b""
    client_is_lo: bool = True            # the client is the lower (address, port) of the flow key
    reuse_of: int | None = None          # id of the flow whose TIME_WAIT this one reused
    reuse_ts: int | None = None
    reuse_packet: int | None = None
    reuse_endpoint: str | None = None    # which endpoint of the old flow was in TIME_WAIT
    anomalies: list = field(default_factory=list)
    emitted: int = 0                     # transitions already handed out by FlowTable.drain()
    timer_due: int | None = None         # the due time last put on FlowTable's timer heap
    zeek: tuple[str, str] | None = None  # (conn_state, history) from the Zeek tracker, when it ran
    tunnels: set[int] | None = None      # encapsulations it was seen in (ids into CaptureInfo.tunnels)

    @property
    def transitions(self) -> list[Transition]:
        return self.conn.transitions

    @property
    def client(self) -> str:
        return hostport(self.client_ip, self.client_port)

    @property
    def server(self) -> str:
        return hostport(self.server_ip, self.server_port)

    def endpoints(self, from_client: bool) -> tuple[bytes, int, bytes, int]:
        """(src, sport, dst, dport) of a segment sent by the client (True) or the server."""
        c, s = (self.client_raw, self.client_port), (self.server_raw, self.server_port)
        return (*c, *s) if from_client else (*s, *c)

    def state(self, role: str) -> State:
        return (self.conn.client if role == "client" else self.conn.server).state

    def finished(self) -> bool:
        c, s = self.conn.client, self.conn.server
        return c.state in (State.CLOSED, State.LISTEN) and s.state in (State.CLOSED, State.LISTEN) \
            and c.deadline is None and s.deadline is None


@dataclass(slots=True)
class ClockStats:
    backwards_steps: int = 0
    largest_step_ns: int = 0


class FlowTable:
    """Assigns segments to connections and feeds their machines, in capture order."""

    def __init__(self, profile: TimerProfile, stale_after: float | None = None, reorder_window: float = 0.5,
                 max_flows: int | None = None, forget_finished: bool = False):
        self.profile = profile
        self.current: dict[bytes, Flow] = {}
        self._flows: dict[int, Flow] = {}   # every flow not forgotten, by id, in creation order
        # Incremental use (live capture, --follow, streaming): flows whose transitions were not drained yet,
        # flows with a timer pending, the cap on tracked connections and what was evicted, by reason.
        self._touched: set[Flow] = set()
        self._detached: set[Flow] = set()   # flows a newer connection on the same 4-tuple replaced in `current`
        self._timers: list[tuple[int, int, Flow]] = []   # heap of (due, flow id, flow); stale entries allowed
        self.max_flows = max_flows
        self.forget_finished = forget_finished
        self.evicted: Counter = Counter()
        self.created = 0                    # connections created so far: the next flow id
        self.clock = 0                      # observer time: max timestamp so far (ns)
        self.last_raw = None
        self.clock_stats = ClockStats()
        self.reorder_window_ns = int(reorder_window * 1e9)
        # A non-SYN segment this long after a finished connection (both endpoints closed, timers done)
        # starts a new, midstream one; finished connections leave the table after it.
        self.stale_after_ns = int((stale_after if stale_after is not None else 10.0) * 1e9)

    def feed_batch(self, batch: Batch) -> None:
        c = batch.cols
        order = self._causal_order(c["ts"])
        if order is not None:
            c = {k: v[order] for k, v in c.items()}
        keys, lo_is_src = _flow_keys(c)
        names = ("ts", "index", "flags", "seq", "ack", "win", "plen", "wscale", "ip_len")
        cols = [c[k].tolist() for k in names]
        src_l, dst_l, sport_l, dport_l = (c[k].tolist() for k in ("src", "dst", "sport", "dport"))
        current = self.current
        clock = self.clock
        last_raw = self.last_raw
        cs = self.clock_stats
        touched, timers = self._touched, self._timers
        for row, (key, lo_src, ts, idx, flags, seq, ack, win, plen, wscale, ip_len) in enumerate(
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
            if flow is not None and not flags & 7 and flow.conn.steady:
                flow.conn.feed_plain(clock, lo_src == flow.client_is_lo, flags, seq, ack, win, plen, ip_len)
                flow.last_ts = clock
                continue
            if flow is not None:
                flow.conn.expire(clock)
                if (flags & SYN) or flow.finished():
                    flow = self._maybe_split(flow, key, clock, idx, lo_src, flags, seq)
            if flow is None:
                flow = self._new_flow(key, clock, idx, src_l[row], sport_l[row], dst_l[row], dport_l[row], flags,
                                      lo_src)
            conn = flow.conn
            conn.feed(clock, idx, lo_src == flow.client_is_lo, flags, seq, ack, win, plen, wscale, ip_len)
            flow.last_ts = clock
            touched.add(flow)
            if not conn.steady:
                due = _due(conn)
                if due is not None and due != flow.timer_due:     # one heap entry per change, not per packet
                    flow.timer_due = due
                    heapq.heappush(timers, (due, flow.id, flow))
        self.clock = clock
        self.last_raw = last_raw
        tun = c.get("tunnel")
        if tun is not None and tun.any():            # rare: attach each encapsulation to its connection
            for row in np.flatnonzero(tun).tolist():
                flow = current.get(keys[row])
                if flow is not None:
                    if flow.tunnels is None:
                        flow.tunnels = set()
                    flow.tunnels.add(int(tun[row]))

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
        sender = conn.client if from_client else conn.server
        if flags & ACK:
            # SYN+ACK: same connection unless it carries a new ISN after the old one is finished
            if sender.isn is None or sender.isn == seq or not flow.finished():
                return flow
            return None
        if from_client and conn.client.isn == seq:
            return flow                                   # retransmitted SYN
        if not from_client and conn.server.isn is None and conn.client.state is State.SYN_SENT \
                and conn.server.state is State.LISTEN:
            return flow                                   # simultaneous open: the peer's own SYN
        if from_client and conn.client.isn is None and conn.client.state is State.SYN_SENT:
            conn.client.isn = seq                         # the SYN whose SYN+ACK we saw first
            return flow
        # A new ISN on this 4-tuple: a new connection. If an endpoint still holds TIME_WAIT, the
        # kernel accepts the SYN and drops the TIME_WAIT (the time_wait_reuse finding).
        tw = next((e for e in (conn.client, conn.server) if e.state is State.TIME_WAIT), None)
        new = self._new_flow(key, ts, idx, *flow.endpoints(from_client), flags, lo_src)
        if tw is not None:
            new.reuse_of, new.reuse_ts, new.reuse_packet, new.reuse_endpoint = flow.id, ts, idx, tw.role
            conn._move(tw, None, ts, idx, "reused:new SYN on the 4-tuple", force=State.CLOSED)
            tw.deadline = None
            self._touched.add(flow)             # the old connection changed too: drain() must see it
        return new

    def _new_flow(self, key: bytes, ts: int, idx: int, src: bytes, sport: int, dst: bytes, dport: int,
                  flags: int, lo_src: bool) -> Flow:
        if flags & SYN and not flags & ACK:
            client, cport, server, sport_, inferred = src, sport, dst, dport, False
        elif flags & SYN:
            client, cport, server, sport_, inferred = dst, dport, src, sport, True
        else:
            if _is_service(sport, dport):
                client, cport, server, sport_ = dst, dport, src, sport
            else:
                client, cport, server, sport_ = src, sport, dst, dport
            inferred = True
        conn = Connection(self.profile)
        self.created += 1
        flow = Flow(id=self.created, client_ip=ip_text(client), client_port=cport,
                    server_ip=ip_text(server), server_port=sport_, role_inferred=inferred, conn=conn,
                    first_ts=ts, last_ts=ts, first_packet=idx, client_raw=client, server_raw=server,
                    client_is_lo=lo_src == (client == src and cport == sport))
        conn.start(ts, client == src and cport == sport, flags)
        self._flows[flow.id] = flow
        old = self.current.get(key)
        if old is not None:
            self._detached.add(old)      # replaced on its 4-tuple: still to be evicted once finished
        self.current[key] = flow
        return flow

    @property
    def flows(self) -> list[Flow]:
        return list(self._flows.values())

    def finish(self, end_ts: int | None = None) -> None:
        """Fire every timer due by the end of the capture."""
        end = max(self.clock, end_ts or 0)
        for flow in self._flows.values():
            before = len(flow.conn.transitions)
            flow.conn.expire(end)
            if len(flow.conn.transitions) != before:
                self._touched.add(flow)
        self._timers.clear()

    # -- incremental use: live capture, --follow, streaming ------------------------------------------------
    def advance(self, now: int) -> None:
        """Fire every timer due by `now` (ns) on every tracked flow. Live mode calls this with the wall clock:
        TIME_WAIT expires and retries run out while no packet arrives."""
        if now > self.clock:
            self.clock = now
        heap = self._timers
        while heap and heap[0][0] <= now:
            _, fid, flow = heapq.heappop(heap)
            conn = flow.conn
            due = _due(conn)
            if due is None:
                flow.timer_due = None                  # stale entry: the timer was cancelled
                continue
            if due > now:
                if due != flow.timer_due:               # stale entry: the timer moved
                    flow.timer_due = due
                    heapq.heappush(heap, (due, fid, flow))
                continue
            before = len(conn.transitions)
            conn.expire(now)
            if len(conn.transitions) != before:
                self._touched.add(flow)
            due = _due(conn)
            flow.timer_due = due
            if due is not None:
                heapq.heappush(heap, (due, fid, flow))

    def drain(self) -> list[tuple[Flow, Transition]]:
        """Transitions made since the last call, in time order, with their flows."""
        out = []
        for flow in self._touched:
            trs = flow.conn.transitions
            if flow.emitted < len(trs):
                out.extend((flow, t) for t in trs[flow.emitted:])
                flow.emitted = len(trs)
        self._touched.clear()
        out.sort(key=lambda ft: ft[1].ts)
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
        if self.forget_finished:
            for f in flows:
                self._flows.pop(f.id, None)
        return sorted(flows, key=lambda f: f.last_ts)

    def enforce_cap(self) -> list[Flow]:
        """Keep at most `max_flows` connections tracked. Over the cap, a tenth of them is dropped: finished
        ones first, then handshakes that never completed (what a SYN flood with spoofed sources creates),
        then the longest idle. Every eviction is counted by reason in `evicted`."""
        if self.max_flows is None or len(self.current) <= self.max_flows:
            return []
        excess = len(self.current) - int(self.max_flows * 0.9)

        def rank(item):
            f = item[1]
            c, s = f.conn.client.state, f.conn.server.state
            half = c in (State.SYN_SENT, State.CLOSED) and s in (State.SYN_RECEIVED, State.LISTEN, State.CLOSED)
            return (0 if f.finished() else 1 if half else 2, f.last_ts)

        victims = sorted(self.current.items(), key=rank)[:excess]
        out = []
        for k, f in victims:
            reason = ("finished", "half_open", "idle")[rank((k, f))[0]]
            self.evicted[reason] += 1
            del self.current[k]
            out.append(f)
        if self.forget_finished:
            for f in out:
                self._flows.pop(f.id, None)
        return out


def _due(conn) -> int | None:
    """The earliest timer of either endpoint (profile deadline or overdue retransmission), or None."""
    due = None
    for ep in (conn.client, conn.server):
        for d in (ep.deadline, ep.retry_deadline):
            if d is not None and (due is None or d < due):
                due = d
    return due


def _flow_keys(c: dict[str, np.ndarray]) -> tuple[list[bytes], list[bool]]:
    """One bytes key per row, the same for both directions: (lower address+port, higher address+port), and
    whether the row's source is the lower side. Built in numpy so the per-packet loop only hashes bytes."""
    n = len(c["ts"])
    a = np.empty((n, 18), np.uint8)
    b = np.empty((n, 18), np.uint8)
    a[:, :16] = c["src"].view(np.uint8).reshape(n, 16)
    b[:, :16] = c["dst"].view(np.uint8).reshape(n, 16)
    a[:, 16:] = c["sport"].astype(">u2").view(np.uint8).reshape(n, 2)
    b[:, 16:] = c["dport"].astype(">u2").view(np.uint8).reshape(n, 2)
    lo = a.view("S18").ravel() <= b.view("S18").ravel()
    key = np.where(lo[:, None], np.concatenate([a, b], axis=1), np.concatenate([b, a], axis=1))
    return np.ascontiguousarray(key).view("V36").ravel().tolist(), lo.tolist()


def _is_service(a: int, b: int) -> bool:
    """Is port `a` (the sender's) more likely the server's than port `b`?"""
    a_svc = a < 1024 or a in SERVICE_PORTS
    b_svc = b < 1024 or b in SERVICE_PORTS
    if a_svc != b_svc:
        return a_svc
    return a < b
