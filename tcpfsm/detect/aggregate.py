"""Findings across connections, built incrementally so a stream can forget finished connections.

Owns the aggregate rules (SYN flood per service, port scan per source, state
piles per host, the reconnect form of vanished_peer) and the roll-up of
per-flow findings per (kind, host, service). `Aggregator.add_flow` takes a
connection that is final (finished, or the capture ended) and keeps only
bounded summaries of it: per-second buckets for floods, first times of
distinct targets for scans, the newest connection per (client, service) for
reconnects, counts and a sample of flow ids for roll-ups. The whole-capture
analysis and the streaming one both go through it, so they agree.
"""
from __future__ import annotations

import math
import struct
from array import array
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field

from ..fsm import State
from ..track.flowtable import Attempt, Flow, hostport, ip_text, service_text
from .._kernels import load
from .piles import PileCounter, host_text
from .rules import (CLEAN, CLIENT_ESTABLISHED, OPEN, PILE_DIAGNOSIS, SEVERITY_RANK, Finding, Thresholds, _secs, _was,
                    judge, rank, screen)

NS = 1_000_000_000
SAMPLE = 1000            # flow ids kept per aggregate finding
MAX_TARGETS = 200_000    # distinct targets remembered per scanning source
MAX_SOURCES = 100_000    # distinct sources remembered per flooded service
MAX_SINGLES = 100_000    # sources seen probing one target so far, remembered (oldest forgotten first)
MAX_NEWEST = 500_000     # (client, service) pairs remembered for the reconnect rule (oldest forgotten first)
MAX_QUIET = 500_000      # connections that left ESTABLISHED on both sides, kept for the reconnect rule
_tally = load("tcpfsm.detect._tally")   # the tallies every failed attempt passes through (compiled)
_PER_TARGET = frozenset({"unanswered_syn"})   # per-flow kinds rolled up per target service, not per client
# the states an attempt that got no answer can have held (Aggregator._attempt)
_ATTEMPT_STATES = frozenset({State.SYN_SENT, State.CLOSED, State.LISTEN, State.SYN_RECEIVED})
_ESTABLISHED = State.ESTABLISHED    # (per connection below: `State.X` is a lookup through the enum's metaclass)


@dataclass(slots=True)
class _Rollup:
    kind: str
    severity: str
    first: Finding
    first_flow: int
    ts_end: int
    count: int = 0
    flows: list[int] = field(default_factory=list)


def _ids(ids=()) -> array:
    """Flow ids, 8 bytes each (a flood's per-second buckets keep up to SAMPLE each, for every second it
    lasted: as a list of ints that was ~36 MB per 1,000 s)."""
    return array("q", ids)


@dataclass(slots=True)
class _Bucket:
    count: int = 0
    answered: int = 0
    lo: int = 0
    hi: int = 0
    flows: array = field(default_factory=_ids)


class QuietLog:
    """The connections handed out still ESTABLISHED on both sides (`Aggregator.quiet`), oldest first, at most
    MAX_QUIET: flow id -> (client address, client port, server address, server port, silent since, server
    retransmissions unanswered). A stream of never-closing connections hands out one per connection it evicts,
    so each is one fixed-size record in a bytearray (60 bytes), not a dict entry of a tuple of Python objects
    (~410 bytes: 40 MB per 100,000). Only appended, dropped oldest first and read in order: no lookup by id.
    A record that does not fit the layout (an address that is not 16 bytes) is kept as its tuple aside."""

    __slots__ = ("_buf", "_start", "_odd")
    _REC = struct.Struct("<q16sH16sHqq")
    _ODD = -1                           # `retrans` of a record kept aside in `_odd` (never negative)

    def __init__(self, items=()):
        self._buf = bytearray()
        self._start = 0                 # byte offset of the oldest record still kept
        self._odd: dict[int, tuple] = {}     # record number -> its tuple (see the class doc)
        for fid, rec in items:
            self.append(fid, rec)

    def __len__(self) -> int:
        return (len(self._buf) - self._start) // self._REC.size

    def append(self, fid: int, rec: tuple) -> None:
        craw, cport, sraw, sport, since, retrans = rec
        try:
            if len(craw) != 16 or len(sraw) != 16 or retrans < 0:
                raise struct.error
            self._buf += self._REC.pack(fid, craw, cport, sraw, sport, since, retrans)
        except (struct.error, TypeError):
            self._odd[len(self._buf) // self._REC.size] = rec
            self._buf += self._REC.pack(fid, bytes(16), 0, bytes(16), 0, 0, self._ODD)

    def popleft(self) -> None:
        """Forget the oldest record."""
        size = self._REC.size
        self._odd.pop(self._start // size, None)
        self._start += size
        if self._start > 65536 and self._start * 2 > len(self._buf):    # amortised O(1) a record
            n = self._start // size
            del self._buf[:self._start]
            self._start = 0
            self._odd = {k - n: v for k, v in self._odd.items()}

    def items(self):
        """(flow id, record tuple), oldest first."""
        size, odd = self._REC.size, self._odd
        for i, (fid, craw, cport, sraw, sport, since, retrans) in enumerate(
                self._REC.iter_unpack(memoryview(self._buf)[self._start:]), self._start // size):
            yield fid, (odd[i] if retrans == self._ODD else (craw, cport, sraw, sport, since, retrans))

    def __iter__(self):
        return (fid for fid, _ in self.items())

    def __getstate__(self):
        return list(self.items())

    def __setstate__(self, items):
        self.__init__(items)


class Aggregator:
    def __init__(self, th: Thresholds):
        self.th = th
        self.piles = PileCounter(th.pile_min_age, keep_min=max(1, int(min(
            th.time_wait_pile_count, th.close_wait_pile_count, th.fin_wait_1_pile_count, th.fin_wait_2_pile_count,
            th.last_ack_pile_count, th.syn_sent_pile_count, th.syn_received_pile_count))))
        self.rollups: dict[tuple[str, str, str], _Rollup] = {}
        self.flood: dict[str, dict[int, _Bucket]] = defaultdict(dict)
        self.flood_sources: dict[str, set[bytes]] = defaultdict(set)   # service -> source addresses, counted
        self.flood_host: dict[str, str] = {}
        # sources (their addresses as captured) with 2+ targets
        self.scan: dict[bytes, dict[tuple[str, int], tuple[int, int, bool]]] = {}
        # sources with one target so far, (target, first ts, flow, refused): a spoofed flood's million sources
        # each probe once; a scanner's second probe comes soon and moves it to `scan`. Bounded, oldest out.
        # (`_tally.Singles`: an insertion-ordered map kept as columns, a flood's source costing two dict
        # probes and no tuple)
        self.scan1 = _tally.Singles()
        # (client address as captured, service) -> newest flow
        self.newest: OrderedDict[tuple[bytes, str], tuple[int, int, int, int]] = OrderedDict()
        # Connections handed out before the end (a stream's evictions) still ESTABLISHED on both sides: the
        # reconnect rule needs the capture's end and every later connection, so it is judged in `finish` from
        # this compact record, as it is for the connections still tracked there. flow id -> (client address,
        # client port, server address, server port, silent since, server retransmissions unanswered); the
        # addresses as captured (16 bytes), their text made in `finish`
        self.quiet = QuietLog()
        self.forgotten = {"scan_sources": 0, "reconnect_pairs": 0, "quiet_connections": 0}   # what the bounds let go of

    # -- per connection ---------------------------------------------------------------------------------
    def add_flow(self, flow: Flow, end: int, kept: bool = True, listed: bool | None = None) -> None:
        """A finished connection: its findings are final; keep only summaries. `kept=False`: a half-open
        attempt evicted over the cap (a spoofed flood's): it counts in floods, scans and roll-ups, but is not
        remembered as a client's newest connection (the reconnect rule). `listed` (default: `kept`): its
        record is written (a stream's) and needs its per-flow findings; an attempt not listed may take the
        short way (`_attempt`)."""
        if not (kept if listed is None else listed) and self._attempt(flow, end):
            return
        flags = screen([flow], end, self.th)[0]
        # (none: the shared empty tuple)
        flow.anomalies = () if flags & CLEAN else (judge(flow, end, self.th, flags) or ())
        self._index(flow, kept, established=bool(flags & CLIENT_ESTABLISHED))
        self._rollup(flow)
        c, s = flow.conn.client, flow.conn.server
        if c.state is _ESTABLISHED and s.state is _ESTABLISHED \
                and not any(a.kind == "vanished_peer" for a in flow.anomalies):
            if len(self.quiet) >= MAX_QUIET:
                self.quiet.popleft()
                self.forgotten["quiet_connections"] += 1
            self.quiet.append(flow.id, (flow.client_raw, flow.client_port, flow.server_raw, flow.server_port,
                                        c.last_ts or flow.first_ts, s.retrans_unanswered))

    def _attempt(self, f: Flow, end: int) -> bool:
        """The short way for a half-open attempt evicted and not kept (`add_flow(kept=False)`; a spoofed flood's
        millions): when the client only sent SYNs, nothing came back and no state beyond the handshake's was
        held, the per-flow rules (rules.flow_findings) can give at most `unanswered_syn`, and only its count,
        severity and end reach the roll-up -- its message too only when it becomes the roll-up's first.
        Returns False, having changed nothing, when the flow is not such an attempt or its finding would be
        the roll-up's first: the caller then takes the full path, which gives the same answer."""
        conn = f.conn
        c, s = conn.client, conn.server
        if s.packets or not c.syns or c.rsts or c.state not in _ATTEMPT_STATES or f.role_inferred or f.reuse_of is not None or conn.violations \
                or conn.rst_by is not None:
            return False
        for t in conn.transitions:
            if t.new not in _ATTEMPT_STATES or t.cause.startswith("icmp:"):
                return False
        server = f.server
        first = c.syn_ts[0]
        if c.syns > 1 or end - first >= self.th.unanswered_syn_after * NS:
            r = self.rollups.get(("unanswered_syn", f.server_ip, server))
            if r is None or first < r.first.ts:
                return False
            sev = "medium" if c.syns > 2 else "low"
            if SEVERITY_RANK[sev] < SEVERITY_RANK[r.severity]:
                r.severity = sev
            last = c.syn_ts[-1]
            if last > r.ts_end:
                r.ts_end = last
            r.count += 1
            if len(r.flows) < SAMPLE:
                r.flows.append(f.id)
        f.anomalies = []                # (rolled up only: the flow is not kept)
        # what `_index` learns of it, its first tests known to pass: not kept, never ESTABLISHED, no packet back
        if not s.rsts:
            self._flood_attempt(server, f.server_raw, f.first_ts, f.id, f.client_raw, s.synacks > 0)
        self._probe(f.server_raw, f.server_port, f.client_raw, f.first_ts, f.id, s.rsts > 0)
        return True

    def add_attempts(self, attempts: list[Attempt], end: int, expand) -> None:
        """Attempts (tcpfsm/track/flowtable.py: one SYN, nothing else) evicted over the cap and not kept, in
        eviction order: what `add_flow(kept=False, listed=False)` does with the flows they stand for, read off
        the records -- `_attempt`'s short way for a client that sent one SYN and got nothing back, in bulk
        (`_tally.tally_attempts`). One whose `unanswered_syn` would be its roll-up's first takes the full path:
        `expand(attempt)` (FlowTable.expand) is the flow it stands for."""
        def full(a: Attempt) -> None:
            self.add_flow(expand(a), end, kept=False, listed=False)

        _tally.tally_attempts(attempts, end, math.ceil(self.th.unanswered_syn_after * NS), self.rollups,
                              SEVERITY_RANK, full, service_text, ip_text, self.flood, self.flood_host,
                              self.flood_sources, _Bucket, SAMPLE, MAX_SOURCES, self.scan, self.scan1,
                              self.forgotten, MAX_SINGLES, MAX_TARGETS)

    def _index(self, f: Flow, kept: bool = True, server: str | None = None, established: bool | None = None) -> None:
        """What the cross-connection rules learn of `f`: its client's newest connection (`kept`), its failed
        handshake (floods, scans). `established`: its client entered ESTABLISHED, when the screen said so."""
        c, s = f.conn.client, f.conn.server
        if server is None:
            server = f.server
        if kept:                        # (an attempt not kept is nobody's newest connection: no key to make)
            key = (f.client_raw, server)
            newest = self.newest
            prev = newest.get(key)
            if prev is None or f.first_ts > prev[0]:
                if prev is None and len(newest) >= MAX_NEWEST:
                    newest.popitem(last=False)
                    self.forgotten["reconnect_pairs"] += 1
                newest[key] = (f.first_ts, f.id, f.client_port, f.first_packet)
        if not c.syns or (_was(f, "client", State.ESTABLISHED) if established is None else established):
            return
        self._failed(f, server)

    def _failed(self, f: Flow, server: str) -> None:
        """`_index`'s second half: what the flood and scan rules learn of `f` (toward `server`, its service
        as text), whose client sent a SYN and never entered ESTABLISHED."""
        c, s = f.conn.client, f.conn.server
        if c.state is not _ESTABLISHED and not s.rsts:          # a handshake that never completed
            self._flood_attempt(server, f.server_raw, f.first_ts, f.id, f.client_raw, s.synacks > 0)
        if not f.role_inferred and (not s.packets or (s.rsts and not s.synacks)):
            self._probe(f.server_raw, f.server_port, f.client_raw, f.first_ts, f.id, s.rsts > 0)

    def _flood_attempt(self, server: str, server_raw: bytes, first: int, fid: int, client_raw: bytes,
                       answered: bool) -> None:
        """A handshake toward `server` (its address as captured: `server_raw`) that never completed, begun at
        `first` by flow `fid` from `client_raw`: counted in its second's bucket (SYN flood)."""
        _tally.flood_attempt(self.flood, self.flood_host, self.flood_sources, ip_text, _Bucket, SAMPLE, MAX_SOURCES,
                             server, server_raw, first, fid, client_raw, answered)

    def _probe(self, server_raw: bytes, port: int, src: bytes, first: int, fid: int, refused: bool) -> None:
        """A connection attempt from `src` (as captured: a flood's sources need no text; `_scans` makes it) its
        target refused or never answered, begun at `first` by flow `fid`: one probe of the port-scan rule."""
        if _tally.probe(self.scan, self.scan1, MAX_SINGLES, MAX_TARGETS, (ip_text(server_raw), port), src, first,
                        fid, refused):
            self.forgotten["scan_sources"] += 1

    def _rollup(self, f: Flow) -> None:
        if f.anomalies:
            # (each address's text made once, and the client's only when a finding is about it: a spoofed
            # flood's every source has its unanswered SYN, rolled up per target)
            server, server_ip, client_ip = f.server, f.server_ip, None
            for a in f.anomalies:
                if _per_client(a):
                    if client_ip is None:
                        client_ip = f.client_ip
                    self._roll(a, f.id, client_ip, server)
                else:
                    self._roll(a, f.id, server_ip, server)

    def _roll(self, a: Finding, fid: int, host: str, server: str) -> None:
        """Per-flow finding `a` of flow `fid` into its roll-up, per (kind, `host`, `server`): the host the
        finding is about (`_per_client`: its client, else its server) as text, the service as text."""
        key = (a.kind, host, server)
        r = self.rollups.get(key)
        if r is None:
            r = self.rollups[key] = _Rollup(a.kind, a.severity, a, fid, a.ts_end or a.ts)
        elif a.ts < r.first.ts:
            r.first, r.first_flow = a, fid
        if SEVERITY_RANK[a.severity] < SEVERITY_RANK[r.severity]:
            r.severity = a.severity
        r.ts_end = max(r.ts_end, a.ts_end or a.ts)
        r.count += 1
        if len(r.flows) < SAMPLE:
            r.flows.append(fid)

    # -- the end ----------------------------------------------------------------------------------------
    def finish(self, remaining: list[Flow], end: int) -> list[Finding]:
        """Connections still tracked at the end, then every aggregate finding, ranked."""
        self._judge(remaining, end, index=True)
        self._quiet_reconnects(end)
        out = self._floods() + self._scans() + self._piles(end) + self._rollups()
        return rank(out)

    def _judge(self, flows: list[Flow], end: int, index: bool) -> None:
        """Per-flow findings of `flows` (the rules run only where the screen did not find a flow CLEAN), each
        `_index`ed too when `index`; then, with every flow indexed, the reconnect rule and the roll-ups."""
        th = self.th
        if type(flows) is not list:
            flows = list(flows)
        flags = screen(flows, end, th)
        for f, fl in zip(flows, flags):
            # (none: the shared empty tuple, not a list a flow)
            f.anomalies = () if fl & CLEAN else (judge(f, end, th, fl) or ())
        if index:                       # (`_index` of each, in order, its newest-connection half compiled)
            dropped, failed = _tally.index_newest(flows, flags, CLIENT_ESTABLISHED, self.newest, MAX_NEWEST,
                                                  service_text)
            self.forgotten["reconnect_pairs"] += dropped
            for f, server in failed:
                self._failed(f, server)
        for f, fl in zip(flows, flags):     # (after every `_index`: the reconnect rule reads the newest of all)
            if fl & OPEN:
                self._reconnect(f, end)
            if f.anomalies:
                self._rollup(f)

    def _reconnect(self, f: Flow, end: int) -> None:
        """Fake ESTABLISHED: still ESTABLISHED on both sides, silent, while the same client opened a newer
        connection to the same service after it went quiet."""
        if f.conn.client.state is not _ESTABLISHED or f.conn.server.state is not _ESTABLISHED:
            return
        if any(a.kind == "vanished_peer" for a in f.anomalies):
            return
        a = self._reconnected(f.id, f.client_raw, f.client, f.server, f.conn.client.last_ts or f.first_ts,
                              f.conn.server.retrans_unanswered, end)
        if a is not None:
            f.anomalies = [*f.anomalies, a]     # (none yet is a shared empty tuple)

    def _reconnected(self, fid: int, client_raw: bytes, client: str, server: str, silent_since: int,
                     server_retrans: int, end: int) -> Finding | None:
        if end - silent_since < self.th.vanished_idle * NS:
            return None
        newest = self.newest.get((client_raw, server))
        if newest is None or newest[1] == fid or newest[0] <= silent_since:
            return None
        first_ts, gid, gport, gpacket = newest
        return Finding(
            "vanished_peer", "high" if server_retrans else "medium", silent_since,
            f"client {client} silent for {_secs(end - silent_since)} without FIN or RST while the server "
            f"{server} still holds it ESTABLISHED; the same client reconnected (flow {gid} from port "
            f"{gport}, {_secs(first_ts - silent_since)} later): fake ESTABLISHED",
            ts_end=end, endpoint="client", flows=[fid, gid], packets=[gpacket])

    def _quiet_reconnects(self, end: int) -> None:
        """The reconnect rule for connections handed out before the end (see `quiet`), rolled up like the rest.
        Their records were written already: the finding is in the roll-up, not in their per-flow list."""
        for fid, (client_raw, client_port, server_raw, server_port, since, retrans) in self.quiet.items():
            client_ip = ip_text(client_raw)
            server = service_text(server_raw, server_port)
            a = self._reconnected(fid, client_raw, hostport(client_ip, client_port), server, since, retrans, end)
            if a is not None:
                self._roll(a, fid, client_ip if _per_client(a) else ip_text(server_raw), server)

    def _floods(self) -> list[Finding]:
        out = []
        w = max(int(self.th.syn_flood_window), 1)
        for svc, buckets in self.flood.items():
            secs = sorted(buckets)
            best, best_range = 0, (0, 0)
            j, total = 0, 0
            for i, sec in enumerate(secs):            # windows of w whole seconds
                total += buckets[sec].count
                while secs[j] <= sec - w:
                    total -= buckets[secs[j]].count
                    j += 1
                if total > best:
                    best, best_range = total, (j, i)
            if best < self.th.syn_flood_count:
                continue
            inwin = [buckets[s] for s in secs[best_range[0]:best_range[1] + 1]]
            lo, hi = min(b.lo for b in inwin), max(b.hi for b in inwin)
            answered = sum(b.answered for b in inwin)
            flows = [i for b in inwin for i in b.flows][:SAMPLE]
            nsrc = len(self.flood_sources[svc])
            srcs = f"{nsrc}" if nsrc < MAX_SOURCES else f"at least {nsrc}"
            out.append(Finding("syn_flood", "critical", lo,
                               f"{best} handshakes toward {svc} never completed within {_secs(hi - lo)} from {srcs} "
                               f"source address(es); {answered} got a SYN+ACK (server in SYN_RECEIVED), "
                               f"{best - answered} got no answer (backlog full?)",
                               ts_end=hi, count=best, flows=flows, host=self.flood_host[svc], service=svc))
        return out

    def _scans(self) -> list[Finding]:
        out = []
        win = int(self.th.port_scan_window * NS)
        for src, targets in self.scan.items():
            items = sorted(((t, fid, refused, tgt) for tgt, (t, fid, refused) in targets.items()))
            best, best_range, j = 0, (0, 0), 0
            for i, (t, *_rest) in enumerate(items):
                while items[j][0] < t - win:
                    j += 1
                if i - j + 1 > best:
                    best, best_range = i - j + 1, (j, i)
            if best < self.th.port_scan_count:
                continue
            inwin = items[best_range[0]:best_range[1] + 1]
            hosts = len({tgt[0] for *_x, tgt in inwin})
            ports = len({tgt[1] for *_x, tgt in inwin})
            refused = sum(1 for _t, _f, r, _g in inwin if r)
            a, b = inwin[0][0], inwin[-1][0]
            src = ip_text(src)
            out.append(Finding("port_scan", "high", a,
                               f"{src} probed {best} targets ({ports} port(s) on {hosts} host(s)) in {_secs(b - a)}: "
                               f"{refused} refused, {best - refused} unanswered",
                               ts_end=b, count=best, flows=sorted(fid for _t, fid, _r, _g in inwin)[:SAMPLE],
                               host=src))
        return out

    def _piles(self, end: int) -> list[Finding]:
        th = self.th
        limits = {State.TIME_WAIT: th.time_wait_pile_count, State.CLOSE_WAIT: th.close_wait_pile_count,
                  State.FIN_WAIT_1: th.fin_wait_1_pile_count, State.FIN_WAIT_2: th.fin_wait_2_pile_count,
                  State.LAST_ACK: th.last_ack_pile_count, State.SYN_SENT: th.syn_sent_pile_count,
                  State.SYN_RECEIVED: th.syn_received_pile_count}
        out = []
        peaks = host_text(self.piles.finish(end))
        for (host, state), peak in sorted(peaks.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
            if state in limits and peak.count >= limits[state]:
                kind, sev, why = PILE_DIAGNOSIS[state]
                out.append(Finding(kind, sev, peak.ts, f"{host} held {peak.count} connections in {state.value} at "
                                   f"once (peak, each for at least {th.pile_min_age:g} s): {why}",
                                   ts_end=peak.ts, count=peak.count, flows=peak.flows, host=host))
        return out

    def _rollups(self) -> list[Finding]:
        out = []
        for (kind, host, svc), r in self.rollups.items():
            if r.count == 1:
                msg = f"flow {r.first_flow}: {r.first.message}"
            else:
                msg = f"{r.count} flows ({host}, service {svc}); first: flow {r.first_flow}: {r.first.message}"
            out.append(Finding(kind, r.severity, r.first.ts, msg, ts_end=r.ts_end, count=r.count,
                               flows=sorted(r.flows), host=host, service=svc))
        return out

    # -- parts of one capture (tcpfsm.distributed) ----------------------------------------------------------
    # A capture split by connection (each connection wholly in one part, flows numbered globally, each part's
    # flows handed over in id order) gives the whole capture's findings: `index_flows` in every part, the
    # parts' indexes merged, the merged `newest` installed in every part for `judge_flows`, their roll-ups
    # merged, the piles fed the merged transitions, then `finish([], end)`. `merge` is associative and
    # commutative. Exact while the bounds (MAX_SINGLES, MAX_NEWEST) forget nothing; past them, one process
    # forgets the oldest in its order and a part in its own, so the two may differ (both count it).
    def index_flows(self, flows: list[Flow]) -> None:
        """What `finish` learns of every connection before judging any (floods, scans, newest per client)."""
        for f in flows:
            self._index(f)

    def judge_flows(self, flows: list[Flow], end: int) -> None:
        """`finish`'s per-connection half with the whole capture's `newest` installed: per-flow findings,
        the reconnect rule, roll-ups."""
        self._judge(flows, end, index=False)

    def summary(self) -> "Aggregator":
        """This aggregator without its piles (the part's transitions go to one PileCounter instead): what a
        part hands over to be merged."""
        out = Aggregator.__new__(Aggregator)
        out.__dict__.update(self.__dict__)
        out.piles = None
        return out

    def merge(self, other: "Aggregator") -> "Aggregator":
        """A new aggregator holding both parts' summaries (not the piles: see `summary`), as if one had seen
        both parts' connections in id order. Dict orders, which order findings of equal rank, are those of
        one process: by the flow that created the entry."""
        out = self.summary()           # (an index one side lacks is the other's as it is: a roll-up-only part
        #                                 merged into a capture's index costs nothing; neither side is changed)
        out.rollups = _merge_ordered(self.rollups, other.rollups, lambda r: r.flows[0], _merge_rollup)
        flood = _merge_ordered(self.flood, other.flood, lambda b: min(x.flows[0] for x in b.values()),
                               lambda a, b: _merge_dicts(a, b, _merge_bucket))
        out.flood = defaultdict(dict, flood)
        out.flood_sources = defaultdict(set)
        for d in (self.flood_sources, other.flood_sources) if self.flood_sources and other.flood_sources else ():
            for k, v in d.items():
                s = out.flood_sources[k] | v
                out.flood_sources[k] = s if len(s) <= MAX_SOURCES else set(sorted(s)[:MAX_SOURCES])
        if not (self.flood_sources and other.flood_sources):
            out.flood_sources = defaultdict(set, self.flood_sources or other.flood_sources)
        out.flood_host = {**self.flood_host, **other.flood_host}
        # scans: every source's targets, each with its first probe (the smallest flow id)
        targets: dict[str, dict] = {}
        for agg in (self, other) if (self.scan or self.scan1) and (other.scan or other.scan1) else ():
            for src, (t, ts, fid, refused) in agg.scan1.items():
                _first_probe(targets.setdefault(src, {}), t, (ts, fid, refused))
            for src, ts_map in agg.scan.items():
                tm = targets.setdefault(src, {})
                for t, v in ts_map.items():
                    _first_probe(tm, t, v)
        scan, scan1 = [], []
        for src, tm in targets.items():
            items = sorted(tm.items(), key=lambda kv: kv[1][1])[:MAX_TARGETS]
            if len(items) == 1:
                t, (ts, fid, refused) = items[0]
                scan1.append((fid, src, (t, ts, fid, refused)))
            else:                        # a source joins `scan` with the first probe of its second target
                scan.append((items[1][1][1], src, dict(items)))
        out.scan = {src: tm for _, src, tm in sorted(scan, key=lambda x: x[0])}
        out.scan1 = _tally.Singles((src, v) for _, src, v in sorted(scan1, key=lambda x: x[0]))
        if not targets:
            one = self if self.scan or self.scan1 else other
            out.scan, out.scan1 = one.scan, one.scan1
        forgotten = Counter(self.forgotten) + Counter(other.forgotten)
        while len(out.scan1) > MAX_SINGLES:           # the oldest out, as `_index` lets them go
            out.scan1.popleft()
            forgotten["scan_sources"] += 1
        out.newest = self.newest or other.newest
        if self.newest and other.newest:
            newest = dict(self.newest)
            for k, v in other.newest.items():
                cur = newest.get(k)
                if cur is None or v[0] > cur[0] or (v[0] == cur[0] and v[1] < cur[1]):
                    newest[k] = v
            out.newest = OrderedDict(sorted(newest.items(), key=lambda kv: kv[1][1]))
        while len(out.newest) > MAX_NEWEST:
            out.newest.popitem(last=False)
            forgotten["reconnect_pairs"] += 1
        out.quiet = QuietLog(sorted({**dict(self.quiet.items()), **dict(other.quiet.items())}.items()))
        out.forgotten = {k: forgotten.get(k, 0) for k in self.forgotten}
        return out


def _per_client(a: Finding) -> bool:
    """A per-flow finding rolled up per client, not per target service. An unanswered SYN is about the
    service that did not answer: rolled up per target, so a flood from a million spoofed sources is one
    finding, not one per source."""
    return a.endpoint == "client" and a.kind not in _PER_TARGET


def _first_probe(targets: dict, t, v: tuple) -> None:
    cur = targets.get(t)
    if cur is None or v[1] < cur[1]:
        targets[t] = v


def _sample(a: list[int], b: list[int], n: int) -> list[int]:
    """The first `n` of two lists of flow ids each in add (id) order, as one list in that order."""
    import heapq
    return list(heapq.merge(a, b))[:n]


def _merge_dicts(a: dict, b: dict, combine) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = v if k not in out else combine(out[k], v)
    return out


def _merge_ordered(a: dict, b: dict, first, combine) -> dict:
    """Both dicts' entries, combined where both have one, in the order of `first(value)` (the flow id that
    created the entry; entries created by one flow come from one part and keep that part's order)."""
    keys = {}
    for src, d in enumerate((a, b)):
        for i, (k, v) in enumerate(d.items()):
            rank = (first(v), src, i)
            if k not in keys or rank < keys[k]:
                keys[k] = rank
    out = {}
    for k in sorted(keys, key=keys.__getitem__):
        out[k] = combine(a[k], b[k]) if k in a and k in b else (a[k] if k in a else b[k])
    return out


def _merge_bucket(a: _Bucket, b: _Bucket) -> _Bucket:
    return _Bucket(a.count + b.count, a.answered + b.answered, min(a.lo, b.lo), max(a.hi, b.hi),
                   _ids(_sample(a.flows, b.flows, SAMPLE)))


def _merge_rollup(a: _Rollup, b: _Rollup) -> _Rollup:
    first, first_flow = (a.first, a.first_flow) if (a.first.ts, a.first_flow) <= (b.first.ts, b.first_flow) \
        else (b.first, b.first_flow)
    sev = a.severity if SEVERITY_RANK[a.severity] <= SEVERITY_RANK[b.severity] else b.severity
    return _Rollup(a.kind, sev, first, first_flow, max(a.ts_end, b.ts_end), a.count + b.count,
                   _sample(a.flows, b.flows, SAMPLE))
