"""The aggregator's kernel: what one handshake that never completed adds to the cross-connection findings.

Owns the two tallies every failed attempt passes through -- its second's bucket of the SYN-flood rule
(`flood_attempt`) and its probe of the port-scan rule (`probe`, with the index of sources probed once,
`Singles`) --, the bulk path for attempts evicted over the cap (`tally_attempts`: a spoofed flood's
millions, each also counted in the `unanswered_syn` roll-up), the reconnect rule's index of the newest
connection per client and service for the flows judged at the end (`index_newest`), the screen every
finished connection passes before the per-flow rules (`screen`: which flows no rule can fire on, most of a
busy capture's, so that the rules run only on the others), and the read of a connection's coarse Zeek
endpoint states that every record's conn_state starts from (`zeek_coarse`, for tcpfsm/detect/zeek.py).
tcpfsm/detect/aggregate.py owns the containers (the aggregator's dicts and its `Singles`, passed in at
each call: `Aggregator.merge` replaces them), what the rules conclude from them and every other finding;
tcpfsm/detect/rules.py the rules the screen answers for. Must not:
import tcpfsm's other modules (the text of addresses, the bucket class, the limits and the states are passed
in), or keep anything between calls.

Cython pure-Python mode (see tcpfsm/capture/_decode.py): compiled by setup.py into tcpfsm.detect._tally_c,
the plain module the readable reference (tests run the suite both ways). Its containers are the same dicts
and sets compiled or not, and `Singles` the same columns (numpy compiled, lists uncompiled), so both forms
tally identically.
"""
from __future__ import annotations

import cython
import numpy as np

i64 = cython.typedef(cython.longlong)


@cython.final
@cython.cclass
class Singles:
    """The port-scan rule's sources with one target so far (`Aggregator.scan1`): source -> its first probe
    (target, ts, flow, refused), oldest first, dropped oldest first past a bound (`probe`). A spoofed flood's
    every source passes through here once, so it is kept as columns, not as an OrderedDict of tuples (an
    entry, a node, a tuple and two ints a source: ~7 dict probes and 5 allocations each): `_at` maps a source
    to its sequence number, and the record lives in a ring of columns at `seq & mask` (first and flow as C
    integers). A source leaves the ring oldest first (`popleft`) or from anywhere (`pop`: its second target);
    the ring holds every sequence number from the oldest still in to the newest (a source that left leaves
    a hole, skipped), and doubles when that span fills it. Reads like the OrderedDict it replaced: `len`,
    `items()` in insertion order; pickles as its items."""

    _at = cython.declare(dict)              # source -> sequence number
    _src = cython.declare(list)             # ring: the source, None for a hole
    _target = cython.declare(list)          # ring: (address text, port)
    _first = cython.declare(cython.longlong[::1])     # ring: ts (ns)
    _fid = cython.declare(cython.longlong[::1])       # ring: flow id
    _refused = cython.declare(cython.longlong[::1])   # ring: 1 refused, 0 unanswered
    _head = cython.declare(i64)             # oldest sequence number the ring may hold
    _tail = cython.declare(i64)             # next sequence number
    _mask = cython.declare(i64)             # ring size - 1 (a power of two)

    def __init__(self, items=()):
        self._at = {}
        self._head = self._tail = 0
        self._alloc(1024)
        for src, (target, first, fid, refused) in items:
            self.add(src, target, first, fid, refused)

    @cython.cfunc
    def _alloc(self, size: i64) -> cython.void:
        """An empty ring of `size` (a power of two) slots."""
        self._src = [None] * size
        self._target = [None] * size
        if cython.compiled:
            self._first = np.zeros(size, np.int64)
            self._fid = np.zeros(size, np.int64)
            self._refused = np.zeros(size, np.int64)
        else:                   # (uncompiled: lists of Python ints)
            self._first = [0] * size
            self._fid = [0] * size
            self._refused = [0] * size
        self._mask = size - 1

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _grow(self) -> cython.void:
        """The ring doubled, every sequence number still held at its new slot."""
        src, target, first, fid, refused = self._src, self._target, self._first, self._fid, self._refused
        old: i64 = self._mask
        self._alloc((old + 1) * 2)
        seq: i64
        for seq in range(self._head, self._tail):       # (bounded: the old ring's slots)
            self._src[seq & self._mask] = src[seq & old]
            self._target[seq & self._mask] = target[seq & old]
            self._first[seq & self._mask] = first[seq & old]
            self._fid[seq & self._mask] = fid[seq & old]
            self._refused[seq & self._mask] = refused[seq & old]

    def __len__(self) -> int:
        return len(self._at)

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def add(self, src, target, first: i64, fid: i64, refused: cython.bint) -> cython.bint:
        """`src`'s first probe, if it has none here: True when added, False when it had one."""
        seq: i64 = self._tail
        boxed: object = seq
        got: i64 = self._at.setdefault(src, boxed)      # (one probe of the dict, whether there or not)
        if got != seq:
            return False
        if seq - self._head > self._mask:
            self._grow()
        i: i64 = seq & self._mask
        self._src[i] = src
        self._target[i] = target
        self._first[i] = first
        self._fid[i] = fid
        self._refused[i] = 1 if refused else 0
        self._tail = seq + 1
        return True

    @cython.ccall
    def target(self, src):
        """The target of `src`'s first probe; None when it has none here."""
        seq = self._at.get(src)
        if seq is None:
            return None
        return self._target[cython.cast(i64, seq) & self._mask]

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def pop(self, src) -> tuple:
        """`src`'s first probe (target, ts, flow, refused), removed (it must have one)."""
        i: i64 = self._at.pop(src)
        i &= self._mask
        out = (self._target[i], self._first[i], self._fid[i], self._refused[i] != 0)
        self._src[i] = None
        self._target[i] = None
        while self._head < self._tail and self._src[self._head & self._mask] is None:   # (bounded: holes)
            self._head += 1
        return out

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def popleft(self) -> cython.void:
        """Forget the oldest source (there must be one)."""
        i: i64
        while True:             # (bounded: the holes before the oldest source)
            i = self._head & self._mask
            self._head += 1
            src = self._src[i]
            if src is not None:
                break
        del self._at[src]
        self._src[i] = None
        self._target[i] = None

    def items(self) -> list:
        """(source, (target, ts, flow, refused)), oldest first."""
        out = []
        seq: i64
        i: i64
        for seq in range(self._head, self._tail):       # (bounded: the ring's slots)
            i = seq & self._mask
            if self._src[i] is not None:
                out.append((self._src[i], (self._target[i], self._first[i], self._fid[i], self._refused[i] != 0)))
        return out

    def __reduce__(self):
        return (Singles, (self.items(),))


@cython.ccall
def flood_attempt(flood, flood_host: dict, flood_sources, ip_text, new_bucket, sample: i64, max_sources: i64,
                  server, server_raw, first: i64, fid: i64, client_raw, answered: cython.bint) -> None:
    """A handshake toward `server` (its address as captured: `server_raw`; `ip_text` makes its text) that
    never completed, begun at `first` by flow `fid` from `client_raw`: counted in its second's bucket
    (`flood[server][second]`, a `new_bucket(lo=, hi=)` when new; up to `sample` flow ids), its source in
    `flood_sources[server]` (up to `max_sources`, counted, not named)."""
    per_second = flood.get(server)
    if per_second is None:
        per_second = {}
        flood[server] = per_second
        flood_host[server] = ip_text(server_raw)
    sec = first // 1_000_000_000
    bucket = per_second.get(sec)
    if bucket is None:
        bucket = new_bucket(lo=first, hi=first)
        per_second[sec] = bucket
    else:
        lo: i64 = bucket.lo
        if first < lo:
            bucket.lo = first
        elif first > bucket.hi:
            bucket.hi = first
    bucket.count += 1
    if answered:
        bucket.answered += 1
    flows = bucket.flows
    if len(flows) < sample:
        flows.append(fid)
    srcs = flood_sources[server]
    if len(srcs) < max_sources:
        srcs.add(client_raw)


@cython.ccall
def probe(scan: dict, singles: Singles, max_singles: i64, max_targets: i64, target: tuple, src, first: i64,
          fid: i64, refused: cython.bint) -> cython.int:
    """A connection attempt from `src` to `target` ((address text, port)) that its target refused or never
    answered, begun at `first` by flow `fid`: one probe of the port-scan rule. A source with one target so
    far lives in `singles` (its first probe; the oldest let go of past `max_singles`: returns 1 when one was,
    for the caller to count); with two or more in `scan` (each target's first probe, up to `max_targets`)."""
    targets = scan.get(src) if scan else None      # (a spoofed flood's `scan` is empty: no lookup)
    if targets is None:
        if singles.add(src, target, first, fid, refused):
            if len(singles) > max_singles:       # (the oldest, never the one just added)
                singles.popleft()
                return 1
            return 0
        if singles.target(src) == target:
            return 0
        single = singles.pop(src)            # a second target: a source worth watching
        targets = {single[0]: single[1:]}
        scan[src] = targets
    if target not in targets and len(targets) < max_targets:
        targets[target] = (first, fid, refused)
    return 0


@cython.final
@cython.cclass
class _Run:
    """What a run of attempts adds to one flood bucket and one `unanswered_syn` roll-up, counted in C integers
    and written back at `flush` (`tally_attempts`: a flood's attempts come in runs of one service and one
    second, so the bucket's and the roll-up's Python attributes are read and written once a run, not once an
    attempt). Written back, they are what counting each attempt into them in turn would have made them."""

    bucket = cython.declare(object)
    b_count = cython.declare(i64)
    b_lo = cython.declare(i64)
    b_hi = cython.declare(i64)
    b_room = cython.declare(i64)        # flow ids the bucket's sample still takes
    b_flows = cython.declare(object)
    rollup = cython.declare(object)
    r_count = cython.declare(i64)
    r_end = cython.declare(i64)
    r_room = cython.declare(i64)
    r_flows = cython.declare(object)
    severity = cython.declare(object)   # the roll-up's severity once the run is written back

    def __init__(self):
        self.bucket = None
        self.rollup = None

    @cython.cfunc
    def open_bucket(self, bucket, sample: i64) -> cython.void:
        self.flush_bucket()
        self.bucket = bucket
        self.b_count = 0
        self.b_lo = bucket.lo
        self.b_hi = bucket.hi
        self.b_flows = bucket.flows
        self.b_room = sample - len(self.b_flows)

    @cython.cfunc
    def open_rollup(self, r, sample: i64) -> cython.void:
        self.flush_rollup()
        self.rollup = r
        self.r_count = 0
        self.r_end = r.ts_end
        self.r_flows = r.flows
        self.r_room = sample - len(self.r_flows)

    @cython.cfunc
    def flush_bucket(self) -> cython.void:
        """The bucket's counts written back (an attempt never answered: `answered` unchanged)."""
        bucket = self.bucket
        if bucket is not None and self.b_count:
            bucket.lo = self.b_lo
            bucket.hi = self.b_hi
            bucket.count += self.b_count
        self.bucket = None

    @cython.cfunc
    def flush_rollup(self) -> cython.void:
        r = self.rollup
        if r is not None and self.r_count:
            r.severity = self.severity
            r.ts_end = self.r_end
            r.count += self.r_count
        self.rollup = None


@cython.ccall
def tally_attempts(attempts: list, end: i64, after: i64, rollups: dict, ranks: dict, full, service_text,
                   ip_text, flood, flood_host: dict, flood_sources, new_bucket, sample: i64, max_sources: i64,
                   scan: dict, scan1: Singles, forgotten: dict, max_singles: i64, max_targets: i64) -> None:
    """Attempts (tcpfsm/track/_runs.py: Attempt, one SYN and nothing back) evicted over the cap and not kept,
    in eviction order: what the aggregator's per-flow path concludes of each, read off the record. One silent
    `after` ns or more by `end` has its `unanswered_syn`, counted in that service's roll-up ("low"); when that
    roll-up does not exist yet or began later, `full(attempt)` takes the full per-flow path instead (its
    finding becomes the roll-up's first). Each is one flood attempt (as `flood_attempt`, counted a run at a
    time: `_Run`) and one probe, neither answered."""
    n: i64 = len(attempts)
    i: i64
    ts: i64
    fid: i64
    sec: i64 = 0
    low: i64 = ranks["low"]
    prev_raw = None
    prev_port: i64 = -1
    server = None
    target = None
    srcs = None
    r_first: i64 = 0
    dropped: i64 = 0
    run = _Run()
    for i in range(n):                   # (bounded: one turn an attempt)
        a = attempts[i]
        raw = a.server_raw
        port: i64 = a.server_port
        if port != prev_port or raw != prev_raw:   # (a flood's attempts share their service: made once)
            run.flush_bucket()
            run.flush_rollup()
            prev_raw, prev_port = raw, port
            server = service_text(raw, port)
            target = (ip_text(raw), port)
        ts = a.ts
        fid = a.id
        if end - ts >= after:
            if run.rollup is None:
                r = rollups.get(("unanswered_syn", target[0], server))
                if r is not None:
                    r_first = r.first.ts
                    if ts >= r_first:
                        run.open_rollup(r, sample)
                        run.severity = "low" if low < ranks[r.severity] else r.severity
            if run.rollup is None or ts < r_first:
                run.flush_bucket()               # (the full path reads and changes them)
                run.flush_rollup()
                full(a)
                continue
            run.r_count += 1
            if ts > run.r_end:
                run.r_end = ts
            if run.r_room > 0:
                run.r_flows.append(fid)
                run.r_room -= 1
        if run.bucket is None or ts // 1_000_000_000 != sec:
            sec = ts // 1_000_000_000
            per_second = flood.get(server)
            if per_second is None:
                per_second = {}
                flood[server] = per_second
                flood_host[server] = ip_text(raw)
            bucket = per_second.get(sec)
            if bucket is None:
                bucket = new_bucket(lo=ts, hi=ts)
                per_second[sec] = bucket
            run.open_bucket(bucket, sample)
            srcs = flood_sources[server]
        run.b_count += 1
        if ts < run.b_lo:
            run.b_lo = ts
        elif ts > run.b_hi:
            run.b_hi = ts
        if run.b_room > 0:
            run.b_flows.append(fid)
            run.b_room -= 1
        client = a.client_raw
        if len(srcs) < max_sources:
            srcs.add(client)
        dropped += probe(scan, scan1, max_singles, max_targets, target, client, ts, fid, False)
    run.flush_bucket()
    run.flush_rollup()
    if dropped:
        forgotten["scan_sources"] += dropped

@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def index_newest(flows: list, flags: bytearray, established: i64, newest, max_newest: i64, service_text) -> tuple:
    """What the reconnect rule learns of each of `flows` (kept, in order): the newest connection of its client
    to its service, `newest[(client address as captured, service text)] = (first ts, flow id, client port,
    first packet)`, where it began later than the one held (a new pair past `max_newest` lets the oldest go).
    `flags`: the screen's (`established`: its CLIENT_ESTABLISHED). Returns (pairs let go of, [(flow, service
    text)] of the flows whose client sent a SYN and never entered ESTABLISHED: what the flood and scan
    tallies still look at, in order).

    `service_text(address, port)` is called once a service (its text kept here for the rest of the call:
    services are few, flows many); `newest` (an OrderedDict) is read as the dict it is and written as itself,
    so that its order is kept."""
    n: i64 = len(flows)
    i: i64
    first: i64
    port: i64
    prev_port: i64 = -1
    dropped: i64 = 0
    failed = []
    texts = {}                          # (server address, port) -> service text
    prev_raw = None
    server = None
    for i in range(n):                   # (bounded: one turn a flow)
        f = flows[i]
        raw = f.server_raw
        port = f.server_port
        if port != prev_port or raw != prev_raw:        # (a service's flows often come together)
            svc = (raw, port)
            server = texts.get(svc)
            if server is None:
                server = service_text(raw, port)
                texts[svc] = server
            prev_raw = raw
            prev_port = port
        key = (f.client_raw, server)
        prev = cython.cast(dict, newest).get(key)       # (an OrderedDict's items are a dict's: read as one)
        first_ts = f.first_ts
        first = first_ts
        if prev is None or first > cython.cast(i64, prev[0]):
            if prev is None and len(newest) >= max_newest:
                newest.popitem(last=False)
                dropped += 1
            newest[key] = (first_ts, f.id, f.client_port, f.first_packet)
        if not flags[i] & established and f.conn.client.syns:
            failed.append((f, server))
    return dropped, failed


@cython.cfunc
@cython.inline
def _coarse(ep, rsts: cython.bint, fins: cython.bint, established: cython.bint, codes: tuple) -> i64:
    """Zeek's state of endpoint `ep` from its counters (`rsts`, `fins`: whether it sent any, read already);
    `established`: one of its transitions entered a state at or past ESTABLISHED, not by a midstream pick-up
    (what decides when the counters do not)."""
    if rsts:
        return codes[6]                         # RESET
    if fins:
        return codes[5]                         # CLOSED
    if established:
        return codes[4]                         # ESTABLISHED
    if ep.synacks:
        return codes[2]                         # SYN_ACK_SENT
    if ep.syns:
        return codes[1]                         # SYN_SENT
    return codes[3] if ep.packets else codes[0]     # PARTIAL, INACTIVE


@cython.ccall
def zeek_coarse(conn, done: int, codes: tuple, entered) -> i64:
    """Zeek's coarse state of the client and of the server of connection `conn` (tcpfsm/detect/zeek.py owns
    what they mean), as client * 16 + server: each from its endpoint's counters and, only when they do not
    decide (no RST, no FIN), whether it entered a state of `done` (ESTABLISHED and the close states: a mask
    of positions in `State`) other than by a midstream pick-up -- `entered(conn, done, want)`, the machine's
    reading of its transitions (tcpfsm.fsm.entered_sides). `codes`: tcpfsm.zeek's INACTIVE, SYN_SENT,
    SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET (each below 16)."""
    c = conn.client
    s = conn.server
    c_rsts: cython.bint = c.rsts
    c_fins: cython.bint = c.fins
    s_rsts: cython.bint = s.rsts
    s_fins: cython.bint = s.fins
    want: i64 = (0 if c_rsts or c_fins else 1) | (0 if s_rsts or s_fins else 2)
    got: i64 = entered(conn, done, want) if want else 0
    return _coarse(c, c_rsts, c_fins, (got & 1) != 0, codes) * 16 + _coarse(s, s_rsts, s_fins, (got & 2) != 0, codes)


# `screen`'s flags of a flow
CLEAN = 1                   # no per-flow rule can fire: the rules need not run
CLIENT_ESTABLISHED = 2      # the client entered ESTABLISHED (any transition, retracted or not)
BRIEF = 4                   # no span rule can fire: every watched close state held briefly, FINs sent once
OPEN = 8                    # both endpoints ESTABLISHED at the end (what the reconnect rule looks at)


@cython.cfunc
@cython.inline
def _span(state, close_wait, fin_wait_2, fin_wait_1, last_ack, closing) -> cython.int:
    """Which span rule measures the stays in `state` (compared by identity with the watched states passed in):
    1 CLOSE_WAIT's, 2 FIN_WAIT_2's, 3 FIN_WAIT_1's (CLOSING's too), 4 LAST_ACK's; 0 none."""
    if state is close_wait:
        return 1
    if state is fin_wait_2:
        return 2
    if state is fin_wait_1 or state is closing:
        return 3
    if state is last_ack:
        return 4
    return 0


@cython.cfunc
@cython.inline
def _brief(span: cython.int, start: i64, stop: i64, close_wait: i64, fin_wait_2: i64, fin_wait_1: i64,
           last_ack: i64) -> cython.bint:
    """A stay from `start` to `stop` (ns) in a state that span rule `span` (`_span`) measures is shorter than
    that rule's limit (a state no span rule watches, 0, always is); False for a watched one with a negative
    time (no subtraction that could overflow)."""
    if span == 0:
        return True
    if start < 0 or stop < 0:
        return False
    if span == 1:
        return stop - start < close_wait
    if span == 2:
        return stop - start < fin_wait_2
    if span == 3:
        return stop - start < fin_wait_1
    return stop - start < last_ack


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def screen(flows: list, end: i64, limits: tuple, states: tuple) -> bytearray:
    """Each flow's flags (`CLEAN`, `CLIENT_ESTABLISHED`, `BRIEF`, `OPEN`), read off its counters and one walk of its
    transitions; `end` is the capture's last timestamp (ns). tcpfsm/detect/rules.py owns the rules and
    passes in what the test reads of them: `limits` (vanished_retrans_count rounded up; the least
    CLOSE_WAIT, FIN_WAIT_2, FIN_WAIT_1 and CLOSING, LAST_ACK stays, in whole ns, that their rules report),
    `states` (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2, FIN_WAIT_1, LAST_ACK, CLOSING).

    CLEAN is a sufficient condition, never a guess: no violation, roles seen, no reuse, no RST from the
    server nor an abort; retransmissions into silence below the vanished_peer count on both sides; at most
    one SYN, answered by a packet; at most one SYN+ACK, and then the server reached ESTABLISHED; and BRIEF:
    at most one FIN each way (sent or inferred), every stay in a watched close state (on the endpoint's
    clock, the open one to `end`) shorter than its rule's limit. A flow that is not CLEAN takes the rules
    (without their span rules when BRIEF); most are CLEAN.

    Every attribute read here is a Python attribute lookup (the fsm's classes are not visible to this module
    as C types), so the walk reads a transition's fields only where they can change the answer: its endpoint
    when it enters ESTABLISHED or a watched stay may begin or end, whether it was retracted and its time only
    when a watched stay begins or ends. The endpoints' states are followed as their span rule (`_span`)."""
    est = states[0]
    cw, fw2, fw1, la, closing = states[1], states[2], states[3], states[4], states[5]
    retrans: i64 = limits[0]
    close_wait: i64 = limits[1]
    fin_wait_2: i64 = limits[2]
    fin_wait_1: i64 = limits[3]
    last_ack: i64 = limits[4]
    n: i64 = len(flows)
    out = bytearray(n)
    i: i64
    first: i64
    at: i64
    c_start: i64
    s_start: i64
    c_span: cython.int
    s_span: cython.int
    span: cython.int
    clean: cython.bint
    brief: cython.bint
    server: cython.bint
    entered: cython.bint
    client_est: cython.bint
    server_est: cython.bint
    for i in range(n):                   # (bounded: one turn a flow)
        f = flows[i]
        conn = f.conn
        c = conn.client
        s = conn.server
        syns: i64 = c.syns
        synacks: i64 = s.synacks
        clean = not conn.violations and not f.role_inferred and conn.rst_by is None and not s.rsts \
            and c.retrans_unanswered < retrans and s.retrans_unanswered < retrans \
            and (syns == 0 or (syns == 1 and s.packets > 0)) and synacks <= 1
        brief = len(c.fin_ts) <= 1 and len(s.fin_ts) <= 1
        first = f.first_ts
        c_span = _span(c.initial, cw, fw2, fw1, la, closing)
        s_span = _span(s.initial, cw, fw2, fw1, la, closing)
        c_start = s_start = first
        client_est = server_est = False
        for t in conn.transitions:      # (bounded: the flow's transitions)
            new = t.new
            entered = new is est
            span = _span(new, cw, fw2, fw1, la, closing)
            if not entered and (not brief or (span == 0 and c_span == 0 and s_span == 0)):
                # nothing read below can change: neither endpoint holds a watched state nor enters one
                continue
            server = t.endpoint == "server"
            if entered:
                if server:
                    server_est = True
                else:
                    client_est = True
            if not brief:
                continue
            if span == 0 and (s_span if server else c_span) == 0:
                # between states no rule measures: neither when it happened nor whether it was retracted
                # matters (had it been, the endpoint stays in a state no rule measures all the same)
                continue
            if not t.retracted:
                at = t.at
                if server:
                    brief = _brief(s_span, s_start, at, close_wait, fin_wait_2, fin_wait_1, last_ack)
                    s_span = span
                    s_start = at
                else:
                    brief = _brief(c_span, c_start, at, close_wait, fin_wait_2, fin_wait_1, last_ack)
                    c_span = span
                    c_start = at
        if brief:
            brief = _brief(c_span, c_start, end if end > c_start else c_start, close_wait, fin_wait_2,
                           fin_wait_1, last_ack) \
                and _brief(s_span, s_start, end if end > s_start else s_start, close_wait, fin_wait_2,
                           fin_wait_1, last_ack)
        # (a flow's reuse is a Python property: read last, only of a flow clean so far)
        clean = clean and brief and (synacks == 0 or server_est) and f.reuse_of is None
        # (CLEAN, CLIENT_ESTABLISHED, BRIEF, OPEN)
        out[i] = (1 if clean else 0) | (2 if client_est else 0) | (4 if brief else 0) \
            | (8 if c.state is est and s.state is est else 0)
    return out
