"""The aggregator's kernel: what one handshake that never completed adds to the cross-connection findings.

Owns the two tallies every failed attempt passes through -- its second's bucket of the SYN-flood rule
(`flood_attempt`) and its probe of the port-scan rule (`probe`) --, the bulk path for attempts evicted
over the cap (`tally_attempts`: a spoofed flood's millions, each also counted in the `unanswered_syn`
roll-up), and the screen every finished connection passes before the per-flow rules (`screen`: which
flows no rule can fire on, most of a busy capture's, so that the rules run only on the others).
tcpfsm/detect/aggregate.py owns the containers (the aggregator's dicts, passed in at each call:
`Aggregator.merge` replaces them), what the rules conclude from them and every other finding;
tcpfsm/detect/rules.py the rules the screen answers for. Must not:
import tcpfsm's other modules (the text of addresses, the bucket class, the limits and the states are passed
in), or keep anything between calls.

Cython pure-Python mode (see tcpfsm/capture/_decode.py): compiled by setup.py into tcpfsm.detect._tally_c,
the plain module the readable reference (tests run the suite both ways). Its containers are the same dicts,
sets and OrderedDict compiled or not, so both forms tally identically.
"""
from __future__ import annotations

import cython

i64 = cython.typedef(cython.longlong)


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
def probe(scan: dict, scan1, max_singles: i64, max_targets: i64, target: tuple, src, first: i64, fid: i64,
          refused: cython.bint) -> cython.int:
    """A connection attempt from `src` to `target` ((address text, port)) that its target refused or never
    answered, begun at `first` by flow `fid`: one probe of the port-scan rule. A source with one target so
    far lives in `scan1` (its first probe; the oldest let go of past `max_singles`: returns 1 when one was,
    for the caller to count); with two or more in `scan` (each target's first probe, up to `max_targets`)."""
    dropped: cython.int = 0
    targets = scan.get(src)
    if targets is None:
        single = scan1.get(src)
        if single is None or single[0] == target:
            if single is None:
                if len(scan1) >= max_singles:
                    scan1.popitem(last=False)
                    dropped = 1
                scan1[src] = (target, first, fid, refused)
            return dropped
        del scan1[src]                       # a second target: a source worth watching
        targets = {single[0]: single[1:]}
        scan[src] = targets
    if target not in targets and len(targets) < max_targets:
        targets[target] = (first, fid, refused)
    return 0


@cython.ccall
def tally_attempts(attempts: list, end: i64, after: i64, rollups: dict, ranks: dict, full, service_text,
                   ip_text, flood, flood_host: dict, flood_sources, new_bucket, sample: i64, max_sources: i64,
                   scan: dict, scan1, forgotten: dict, max_singles: i64, max_targets: i64) -> None:
    """Attempts (tcpfsm/track/_runs.py: Attempt, one SYN and nothing back) evicted over the cap and not kept,
    in eviction order: what the aggregator's per-flow path concludes of each, read off the record. One silent
    `after` ns or more by `end` has its `unanswered_syn`, counted in that service's roll-up ("low"); when that
    roll-up does not exist yet or began later, `full(attempt)` takes the full per-flow path instead (its
    finding becomes the roll-up's first). Each is one flood attempt and one probe, neither answered."""
    n: i64 = len(attempts)
    i: i64
    ts: i64
    low: i64 = ranks["low"]
    prev_raw = None
    prev_port: i64 = -1
    server = None
    target = None
    r = None
    r_first: i64 = 0
    dropped: i64 = 0
    for i in range(n):                   # (bounded: one turn an attempt)
        a = attempts[i]
        raw = a.server_raw
        port: i64 = a.server_port
        if port != prev_port or raw != prev_raw:   # (a flood's attempts share their service: made once)
            prev_raw, prev_port = raw, port
            server = service_text(raw, port)
            target = (ip_text(raw), port)
            r = None
        ts = a.ts
        if end - ts >= after:
            if r is None:
                r = rollups.get(("unanswered_syn", target[0], server))
                if r is not None:
                    r_first = r.first.ts
            if r is None or ts < r_first:
                full(a)
                r = None                     # (the full path may have made or changed the roll-up)
                continue
            if low < ranks[r.severity]:
                r.severity = "low"
            if ts > r.ts_end:
                r.ts_end = ts
            r.count += 1
            if len(r.flows) < sample:
                r.flows.append(a.id)
        flood_attempt(flood, flood_host, flood_sources, ip_text, new_bucket, sample, max_sources, server, raw, ts,
                      a.id, a.client_raw, False)
        dropped += probe(scan, scan1, max_singles, max_targets, target, a.client_raw, ts, a.id, False)
    if dropped:
        forgotten["scan_sources"] += dropped

# `screen`'s flags of a flow
CLEAN = 1                   # no per-flow rule can fire: the rules need not run
CLIENT_ESTABLISHED = 2      # the client entered ESTABLISHED (any transition, retracted or not)
BRIEF = 4                   # no span rule can fire: every watched close state held briefly, FINs sent once
OPEN = 8                    # both endpoints ESTABLISHED at the end (what the reconnect rule looks at)


@cython.cfunc
@cython.inline
def _watched(state, states: tuple) -> cython.bint:
    """A span rule measures the stays in `state` (CLOSE_WAIT, FIN_WAIT_2, FIN_WAIT_1, LAST_ACK, CLOSING)."""
    return state is states[1] or state is states[2] or state is states[3] or state is states[4] \
        or state is states[5]


@cython.cfunc
@cython.inline
def _brief(state, start: i64, stop: i64, states: tuple, close_wait: i64, fin_wait_2: i64, fin_wait_1: i64,
           last_ack: i64) -> cython.bint:
    """A stay in `state` from `start` to `stop` (ns) is shorter than its rule's limit (a state no span rule
    watches always is); False for a watched one with a negative time (no subtraction that could overflow)."""
    if not _watched(state, states):
        return True
    if start < 0 or stop < 0:
        return False
    if state is states[1]:
        return stop - start < close_wait
    if state is states[2]:
        return stop - start < fin_wait_2
    if state is states[3] or state is states[5]:
        return stop - start < fin_wait_1
    if state is states[4]:
        return stop - start < last_ack
    return True


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
    (without their span rules when BRIEF); most are CLEAN."""
    est = states[0]
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
    clean: cython.bint
    brief: cython.bint
    server: cython.bint
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
            and (syns == 0 or (syns == 1 and s.packets > 0)) and synacks <= 1 and f.reuse_of is None
        brief = len(c.fin_ts) <= 1 and len(s.fin_ts) <= 1
        first = f.first_ts
        c_state = c.initial
        s_state = s.initial
        c_start = s_start = first
        client_est = server_est = False
        for t in conn.transitions:      # (bounded: the flow's transitions)
            new = t.new
            server = t.endpoint == "server"
            if new is est:
                if server:
                    server_est = True
                else:
                    client_est = True
            if not brief:
                continue
            cur = s_state if server else c_state
            if not _watched(cur, states) and not _watched(new, states):
                # between states no rule measures: neither when it happened nor whether it was retracted
                # matters (had it been, the endpoint stays in a state no rule measures all the same)
                if server:
                    s_state = new
                else:
                    c_state = new
            elif not t.retracted:
                at = t.at
                if server:
                    brief = _brief(s_state, s_start, at, states, close_wait, fin_wait_2, fin_wait_1, last_ack)
                    s_state = new
                    s_start = at
                else:
                    brief = _brief(c_state, c_start, at, states, close_wait, fin_wait_2, fin_wait_1, last_ack)
                    c_state = new
                    c_start = at
        if brief:
            brief = _brief(c_state, c_start, end if end > c_start else c_start, states, close_wait, fin_wait_2,
                           fin_wait_1, last_ack) \
                and _brief(s_state, s_start, end if end > s_start else s_start, states, close_wait, fin_wait_2,
                           fin_wait_1, last_ack)
        clean = clean and brief and (synacks == 0 or server_est)
        # (CLEAN, CLIENT_ESTABLISHED, BRIEF, OPEN)
        out[i] = (1 if clean else 0) | (2 if client_est else 0) | (4 if brief else 0) \
            | (8 if c.state is est and s.state is est else 0)
    return out
