"""What went wrong: per-flow findings and aggregate ones (per host, per service, over time windows).

Owns the anomaly kinds, their default thresholds (all in `Thresholds`, each
overridable by name), severities and messages. Each finding carries its
evidence: flow ids, packet indices, times and ages. It reads finished flows
and their intervals; it never changes a state.
"""
from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace

from .._kernels import load
from ..fsm import State
from ..track.flowtable import Flow

_tally = load("tcpfsm.detect._tally")   # the screen before the per-flow rules (compiled)

NS = 1_000_000_000
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
SYNCHRONIZED = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT,
                          State.CLOSING, State.LAST_ACK, State.SYN_RECEIVED})


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Default thresholds of every rule (seconds unless named *_count)."""

    unanswered_syn_after: float = 1.0        # a lone SYN must stay unanswered this long
    half_open_after: float = 3.0             # SYN_RECEIVED this long without the handshake ACK
    slow_connect: float = 3.0                # connect latency above this is medium, not low
    stuck_close_wait: float = 30.0           # CLOSE_WAIT this long: the application does not close
    lingering_fin_wait_2: float = 30.0
    fin_wait_1_unacked: float = 3.0          # FIN unacknowledged this long (or retransmitted)
    last_ack_unacked: float = 3.0
    vanished_retrans_count: float = 3        # retransmissions into silence
    vanished_idle: float = 30.0              # one side silent this long while the other is not
    syn_flood_count: float = 100             # half-open connections toward one service ...
    syn_flood_window: float = 10.0           # ... within this window
    port_scan_count: float = 20              # distinct ports/hosts probed by one source ...
    port_scan_window: float = 60.0           # ... within this window
    time_wait_pile_count: float = 100        # TIME_WAIT held at once by one host
    close_wait_pile_count: float = 10
    fin_wait_1_pile_count: float = 10
    fin_wait_2_pile_count: float = 50
    last_ack_pile_count: float = 10
    syn_sent_pile_count: float = 20
    syn_received_pile_count: float = 50
    pile_min_age: float = 1.0                # an endpoint counts in a pile once it held the state this long
    # path health (tcpfsm.detect.path_rules)
    lossy_path_rate: float = 0.01            # retransmitted / data segments between two hosts above this ...
    lossy_path_min_count: float = 5          # ... with at least this many retransmissions
    slow_handshake: float = 0.5              # connect latency (first SYN to the handshake ACK) above this
    zero_window_stall: float = 1.0           # a receiver advertised a zero window this long in total
    keepalive_idle: float = 60.0             # an established connection silent this long without keep-alives
    listen_queue_overflow_count: float = 1   # connections whose completed handshake the server ignored
    icmp_unreachable_count: float = 1        # ICMP errors (unreachable, prohibited, time exceeded) toward a service

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def override(self, **kw: float) -> "Thresholds":
        bad = [k for k in kw if k not in self.names()]
        if bad:
            raise ValueError(f"unknown threshold {bad[0]!r} (see `tcpfsm analyze --help`)")
        from ..fsm.profiles import seconds
        return replace(self, **{k: seconds(f"threshold {k}", v, MAX_THRESHOLD) for k, v in kw.items()})


MAX_THRESHOLD = 1e9              # seconds or counts: beyond it a threshold could never be reached anyway


@dataclass(slots=True)
class Finding:
    kind: str
    severity: str
    ts: int                      # ns: when it began
    message: str
    ts_end: int | None = None
    endpoint: str | None = None  # "client" | "server" for per-flow findings
    count: int = 1
    flows: list[int] = field(default_factory=list)
    packets: list[int] = field(default_factory=list)
    host: str | None = None      # the host the finding is about (aggregates)
    service: str | None = None   # "ip:port" of the service involved


# Diagnoses for state piles, from the field guide: what a heap of each state means during an outage.
PILE_DIAGNOSIS = {
    State.SYN_SENT: ("syn_sent_pile", "high", "its connects are not answered: the service it calls is down or "
                     "blackholed, or this host is scanning (worm?)"),
    State.SYN_RECEIVED: ("syn_received_pile", "high", "handshakes never complete: SYN flood (spoofed sources) "
                         "or clients' ACKs are lost"),
    State.CLOSE_WAIT: ("close_wait_pile", "high", "peers closed but the application never closes its sockets "
                       "(descriptor leak, stuck workers)"),
    State.FIN_WAIT_1: ("fin_wait_1_pile", "high", "it closed connections whose peers never acknowledge the FIN: "
                       "peers unreachable (typical of a server shutdown/restart under load)"),
    State.FIN_WAIT_2: ("fin_wait_2_pile", "medium", "peers acknowledged its FIN but never close their side "
                       "(the peers' CLOSE_WAIT leak)"),
    State.LAST_ACK: ("last_ack_pile", "medium", "clients vanished in the middle of the close (e.g. a load "
                     "generator killed): the final ACKs never come"),
    State.TIME_WAIT: ("time_wait_pile", "medium", "it actively closes many short connections: ephemeral port "
                      "and memory pressure; consider keep-alive/pooling or letting the peer close first"),
}


def _secs(ns: int) -> str:
    s = ns / NS
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s" if s >= 0.1 else f"{s * 1000:.1f} ms"


def _ep(flow: Flow, role: str) -> str:
    return flow.client if role == "client" else flow.server


def _all_spans(flow: Flow, end: int) -> dict[tuple[str, State], list[tuple[int, int, int | None, bool]]]:
    """(role, state) -> [(start, end, packet that entered, still_in_it_at_capture_end)], in one pass, on the
    endpoint's clock (the observer model's `at`: how long the endpoint itself held the state)."""
    spans: dict[tuple[str, State], list] = {}
    cur = {"client": (flow.conn.client.initial, flow.first_ts, None),
           "server": (flow.conn.server.initial, flow.first_ts, None)}
    for t in flow.transitions:
        if t.retracted:                 # never happened: the endpoint held its state through it
            continue
        state, start, pkt = cur[t.endpoint]
        spans.setdefault((t.endpoint, state), []).append((start, t.at, pkt, False))
        cur[t.endpoint] = (t.new, t.at, t.packet)
    for role, (state, start, pkt) in cur.items():
        spans.setdefault((role, state), []).append((start, max(end, start), pkt, True))
    return spans


# (role, state) pairs whose spans the close-state rules read
_CLOSE_KEYS = frozenset((role, st) for role in ("client", "server") for st in (
    State.CLOSE_WAIT, State.FIN_WAIT_2, State.FIN_WAIT_1, State.LAST_ACK, State.CLOSING))

# what the screen (tcpfsm/detect/_tally.py: `screen`) reads of the rules below: the states its stays are
# measured in, and per flow its flags
_SCREENED = (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_2, State.FIN_WAIT_1, State.LAST_ACK,
             State.CLOSING)
CLEAN, CLIENT_ESTABLISHED, BRIEF, OPEN = _tally.CLEAN, _tally.CLIENT_ESTABLISHED, _tally.BRIEF, _tally.OPEN


_I64_MAX = 2**63 - 1


def _least(x: float) -> int:
    """The least int that reaches the float `x` (ceil(x): an int `d` has d >= x exactly when d >= ceil(x)),
    at most int64's largest (no count or span of ns goes past it)."""
    return _I64_MAX if x >= _I64_MAX else math.ceil(x)


@functools.lru_cache(maxsize=16)
def _limits(th: Thresholds) -> tuple[int, int, int, int, int]:
    """The screen's limits: the least retransmissions into silence, and the least stays in CLOSE_WAIT,
    FIN_WAIT_2, FIN_WAIT_1 (and CLOSING), LAST_ACK, in whole ns, that the rules below report."""
    return (_least(th.vanished_retrans_count), _least(th.stuck_close_wait * NS),
            _least(th.lingering_fin_wait_2 * NS), _least(th.fin_wait_1_unacked * NS),
            _least(th.last_ack_unacked * NS))


def screen(flows: list[Flow], end: int, th: Thresholds) -> bytearray:
    """Per flow, its flags: CLEAN when no per-flow rule can fire on it (`judge` would find nothing: most
    connections of a busy capture, screened in one compiled pass instead of judged one by one),
    CLIENT_ESTABLISHED when its client entered ESTABLISHED, BRIEF when no close-state span rule can fire
    (`judge` given the flags skips them), OPEN when both endpoints are ESTABLISHED at the end. `end`: the capture's last
    timestamp (ns)."""
    return _tally.screen(flows if type(flows) is list else list(flows), end, _limits(th), _SCREENED)


def _icmp_ended(flow: Flow) -> bool:
    """An ICMP error answered the SYN and ended the connect (tcpfsm/path/icmp.py; its finding is
    icmp_unreachable, path_rules.py): not an unanswered SYN."""
    return any(t.cause.startswith("icmp:") and not t.retracted for t in flow.transitions)


def flow_findings(flow: Flow, end: int, th: Thresholds) -> list[Finding]:
    """Per-flow rules; `end` is the capture's last timestamp (ns)."""
    flags = screen([flow], end, th)[0]
    return [] if flags & CLEAN else judge(flow, end, th, flags)


_ESTABLISHED = State.ESTABLISHED    # (a module global: `State.X` is a lookup through the enum's metaclass, ~110 ns)


def judge(flow: Flow, end: int, th: Thresholds, flags: int | None = None) -> list[Finding]:
    """The per-flow rules run on `flow` (`flow_findings` without the screen: for a flow `screen` did not
    find CLEAN). `flags`: the screen's for it, which the rules then take as read (BRIEF: the close-state span
    rules are skipped; CLIENT_ESTABLISHED); None: they work it out."""
    out: list[Finding] = []
    c, s = flow.conn.client, flow.conn.server
    add = out.append
    brief = flags is not None and flags & BRIEF
    spans = None                        # (role, state) -> its spans (`_all_spans`), made when a rule needs them
    answered = s.synacks > 0 or (s.packets > 0 and not s.rsts)

    # -- the handshake -------------------------------------------------------------------
    if c.syns and not flow.role_inferred:
        syn_ts = c.syn_ts
        first = syn_ts[0]
        # (a client that went on to acknowledge the server, as in a capture of one direction only, was answered)
        if not s.packets and not (_was(flow, "client", State.ESTABLISHED) if flags is None
                                  else flags & CLIENT_ESTABLISHED) \
                and (c.syns > 1 or end - first >= th.unanswered_syn_after * NS) and not _icmp_ended(flow):
            gave_up = any(t.cause == "timer:syn_retries" for t in flow.transitions)
            add(Finding("unanswered_syn", "medium" if c.syns > 2 else "low", first,
                        f"SYN from {flow.client} to {flow.server} never answered: {c.syns} SYN(s) over "
                        f"{_secs(syn_ts[-1] - first)}" + (", connect() timed out" if gave_up else
                                                          ", still SYN_SENT at capture end"),
                        ts_end=syn_ts[-1], endpoint="client", packets=[flow.first_packet]))
        elif s.rsts and not s.synacks:
            rst_t = flow.conn.rst_ts or s.last_ts
            add(Finding("rejected", "low", first,
                        f"connection to {flow.server} refused: SYN answered by RST after {_secs(rst_t - first)}"
                        + (f" ({c.syns} SYNs)" if c.syns > 1 else ""),
                        ts_end=rst_t, endpoint="server", packets=[flow.first_packet, flow.conn.rst_packet or 0]))
        if c.syns > 1 and answered:
            answer = s.syn_ts[0] if s.syn_ts else (flow.conn.rst_ts or s.first_ts or first)
            lat = answer - first
            add(Finding("retransmitted_syn", "medium" if lat >= th.slow_connect * NS else "low", first,
                        f"connect latency {_secs(lat)}: SYN sent {c.syns} times before {flow.server} answered",
                        ts_end=answer, endpoint="client", packets=[flow.first_packet]))
    if s.synacks:
        est = None                      # the server's first entry into ESTABLISHED
        for t in flow.transitions:
            if t.new is _ESTABLISHED and t.endpoint == "server":
                est = t
                break
        if est is None:
            spans = _all_spans(flow, end)
            stay = spans.get(("server", State.SYN_RECEIVED), [])
            dur = sum(b - a for a, b, _, _ in stay)
            if s.synacks > 1 or dur >= th.half_open_after * NS:
                dropped = any(t.cause == "timer:synack_retries" for t in flow.transitions)
                add(Finding("half_open", "medium", s.syn_ts[0],
                            f"{flow.server} held SYN_RECEIVED for {_secs(dur)} toward {flow.client}: SYN+ACK "
                            f"sent {s.synacks} times, the handshake ACK never came"
                            + (" (dropped by its timer)" if dropped else ""),
                            ts_end=s.syn_ts[-1], endpoint="server", packets=[flow.first_packet]))
        elif s.synacks > 1:
            add(Finding("retransmitted_synack", "low", s.syn_ts[0],
                        f"handshake with {flow.server} completed after {s.synacks - 1} SYN+ACK retransmission(s), "
                        f"{_secs(est.ts - s.syn_ts[0])} after the first SYN+ACK",
                        ts_end=est.ts, endpoint="server", packets=[est.packet or 0]))

    # -- stuck or lingering close states ----------------------------------------------------
    # (only where one of their states was held: a spoofed flood's attempts hold none of them, and skipping
    # them is what keeps a flood cheap)
    close = not brief and not _CLOSE_KEYS.isdisjoint(
        [(t.endpoint, t.new) for t in flow.transitions] + [("client", c.initial), ("server", s.initial)])
    if close and spans is None:
        spans = _all_spans(flow, end)
    for role in ("client", "server") if close else ():
        ep = c if role == "client" else s
        for state, kind, limit, sev, what in (
                (State.CLOSE_WAIT, "stuck_close_wait", th.stuck_close_wait, "high",
                 "the peer closed, the application never did"),
                (State.FIN_WAIT_2, "lingering_fin_wait_2", th.lingering_fin_wait_2, "medium",
                 "its FIN was acknowledged, the peer never closed its side")):
            for a, b, pkt, open_ in spans.get((role, state), ()):
                if b - a >= limit * NS:
                    # (rule 5 of fsm/machine.py: the close that ended it may have come earlier, unseen)
                    early = None if open_ else next((t.alt_before[0] for t in flow.transitions
                                                     if t.alt_before is not None and t.endpoint == role
                                                     and t.old is state and t.at == b), None)
                    add(Finding(kind, sev, a, f"{role} {_ep(flow, role)} in {state.value} for {_secs(b - a)}"
                                f" (since packet #{pkt}){' and still at capture end' if open_ else ''}: {what}"
                                + ("" if early is None else
                                   f" (or for as little as {_secs(max(early - a, 0))}: it may have closed unseen, its FIN's"
                                   " first copies lost before the capture point or queued behind data)"),
                                ts_end=b, endpoint=role, packets=[pkt] if pkt else []))
        for state, kind, limit in ((State.FIN_WAIT_1, "fin_wait_1_unacked", th.fin_wait_1_unacked),
                                   (State.LAST_ACK, "last_ack_unacked", th.last_ack_unacked),
                                   (State.CLOSING, "fin_wait_1_unacked", th.fin_wait_1_unacked)):
            for a, b, pkt, open_ in spans.get((role, state), ()):
                left_by_ack = not open_ and any(t.endpoint == role and t.at == b and t.cause == "ACK of FIN"
                                                and t.alt is None for t in flow.transitions)
                if left_by_ack:
                    continue
                fins = sum(1 for t in ep.fin_ts if a <= t <= b)
                if fins > 1 or b - a >= limit * NS:
                    peer = "client" if role == "server" else "server"
                    add(Finding(kind, "high", a, f"{role} {_ep(flow, role)} in {state.value} for {_secs(b - a)}: "
                                f"FIN sent {fins} time(s), never acknowledged by the {peer} "
                                f"{_ep(flow, peer)}" + (" (still at capture end)" if open_ else
                                                        " (given up by its timer)"),
                                ts_end=b, endpoint=role, packets=[pkt] if pkt else []))

    # -- aborts and protocol violations --------------------------------------------------------
    conn = flow.conn
    if conn.rst_by and conn.rst_state in SYNCHRONIZED:
        by = conn.rst_by
        other = "server" if by == "client" else "client"
        sent = (c if by == "client" else s).payload
        got = (s if by == "client" else c).payload
        add(Finding("rst_abort", "medium", conn.rst_ts,
                    f"{by} {_ep(flow, by)} aborted the connection with RST in {conn.rst_state.value} "
                    f"(packet #{conn.rst_packet}) after sending {sent} B and receiving {got} B; the {other} "
                    f"was in {_state_before(flow, other, conn.rst_ts).value}",
                    endpoint=by, packets=[conn.rst_packet or 0]))
    by_kind: dict[tuple[str, str], list] = defaultdict(list) if conn.violations else {}
    for v in conn.violations:
        by_kind[(v.kind, v.endpoint)].append(v)
    for (kind, role), vs in by_kind.items():
        sev = "medium" if kind == "out_of_window_rst" else "low"
        more = f" (and {len(vs) - 1} more)" if len(vs) > 1 else ""
        add(Finding(kind, sev, vs[0].ts, f"{vs[0].message} at packet #{vs[0].packet}{more}",
                    ts_end=vs[-1].ts, endpoint=role, count=len(vs), packets=[v.packet for v in vs[:20] if v.packet]))
    if flow.reuse_of is not None:
        add(Finding("time_wait_reuse", "low", flow.reuse_ts,
                    f"new SYN (packet #{flow.reuse_packet}) reused the 4-tuple while the {flow.reuse_endpoint} "
                    f"of flow {flow.reuse_of} was in TIME_WAIT; the kernel accepted it as a new connection",
                    endpoint=flow.reuse_endpoint, packets=[flow.reuse_packet or 0]))
    if flow.role_inferred:
        how = "SYN not captured, SYN+ACK sender taken as server" if s.synacks and not c.syns else \
            "no handshake seen, roles inferred from ports"
        add(Finding("midstream", "info", flow.first_ts, f"picked up midstream at packet #{flow.first_packet}: {how}",
                    packets=[flow.first_packet]))

    # -- vanished peer ("fake ESTABLISHED") --------------------------------------------------------
    for role in ("client", "server") if max(c.retrans_unanswered, s.retrans_unanswered) >= th.vanished_retrans_count \
            else ():
        ep, peer = (c, s) if role == "client" else (s, c)
        peer_role = "server" if role == "client" else "client"
        if ep.retrans_unanswered >= th.vanished_retrans_count and peer.last_ts is not None \
                and ep.state in (State.ESTABLISHED, State.FIN_WAIT_1, State.CLOSE_WAIT, State.CLOSED) \
                and _was(flow, peer_role, State.ESTABLISHED):
            add(Finding("vanished_peer", "high", peer.last_ts,
                        f"{peer_role} {_ep(flow, peer_role)} went silent without FIN or RST: {role} "
                        f"retransmitted {ep.retrans_unanswered} times into silence over "
                        f"{_secs((ep.last_ts or end) - (ep.first_unanswered_ts or peer.last_ts))}; the {role} "
                        f"still believed it ESTABLISHED (fake ESTABLISHED)",
                        ts_end=ep.last_ts, endpoint=peer_role))
    # -- what the packets could not decide, said where it matters ----------------------------------
    alts: dict = {}                     # role -> the state it may be in instead at the end, for the roles named
    for f in out:
        if f.endpoint == "client" or f.endpoint == "server":
            ep = c if f.endpoint == "client" else s
            a = alts[f.endpoint] if f.endpoint in alts else alts.setdefault(f.endpoint, flow.conn.alt_of(ep))
            if a is not None:
                f.message += (f" (the packets cannot decide the {f.endpoint}'s state at the end: "
                              f"{ep.state.value}, or {a.value})")
    return out


def _was(flow: Flow, role: str, state: State) -> bool:
    return any(t.endpoint == role and t.new is state for t in flow.transitions)


def _state_before(flow: Flow, role: str, ts: int) -> State:
    """The state `role` entered by its last transition (in the flow's order) stamped before `ts`; its initial
    state when none was. (Read from the end: the RST it is asked about is most often among the last.)"""
    for t in reversed(flow.transitions):
        if t.endpoint == role and t.ts < ts:
            return t.new
    return flow.conn.client.initial if role == "client" else flow.conn.server.initial


def rank(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda a: (SEVERITY_RANK[a.severity], -a.count, a.ts))
