"""Findings that need path facts (issue 8): lossy_path, slow_handshake, zero_window_stall, keepalive_absent,
listen_queue_overflow.

Owns these kinds' rules, severities and messages; thresholds live with the others in `Thresholds` (each
overridable by name). Reads the analysis' flows and their path facts (tcpfsm.path.flows.PathFacts); per-flow
findings go on the flow (its `anomalies`, as the other per-flow kinds) and are rolled up per (kind, host,
service) into the analysis' findings; per host pair and per service ones are aggregate findings.
Must not: change a state or a path fact.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..fsm import State
from .rules import SEVERITY_RANK, Finding, _secs, rank

NS = 1_000_000_000
SAMPLE = 1000                      # flow ids kept per aggregate finding


def path_findings(an) -> None:
    """Add the path findings to `an` (flows' anomalies, an.findings)."""
    from ..path.segments import CS
    facts, th = an.path, an.thresholds
    flows = an.flows
    cs = facts.cs
    per_flow: list[tuple[int, Finding]] = []
    for row, f in enumerate(flows):
        c = int(facts.conv_of_flow[row])
        if c < 0:
            continue
        r = cs[c]
        # slow_handshake: connect latency from the first SYN to the ACK completing the handshake, retries included
        if r[CS["first_rtt"]] and r[CS["first_syn_ts"]]:
            done = int(r[CS["mru_syn"]] + r[CS["first_rtt"]])
            lat = done - int(r[CS["first_syn_ts"]])
            if lat > th.slow_handshake * NS:
                syns = int(facts.syns["client"][row])
                sev = "medium" if lat >= th.slow_connect * NS else "low"
                retries = f", {syns - 1} SYN retransmission(s)" if syns > 1 else ""
                per_flow.append((row, Finding(
                    "slow_handshake", sev, int(r[CS["first_syn_ts"]]),
                    f"connect to {f.server} took {_secs(lat)} (handshake RTT {_secs(int(r[CS['first_rtt']]))}{retries})",
                    ts_end=done, endpoint="client", packets=[f.first_packet, int(r[CS["rtt_packet"]])])))
        # zero_window_stall: the receiver's application stopped reading (not the network)
        for role in ("client", "server"):
            count, ns = int(facts.zw[role][0][row]), int(facts.zw[role][1][row])
            if count and ns >= th.zero_window_stall * NS:
                first = int(facts.first_zw[role][row])
                sev = "medium" if ns < 10 * th.zero_window_stall * NS else "high"
                per_flow.append((row, Finding(
                    "zero_window_stall", sev, f.first_ts,
                    f"{f.client if role == 'client' else f.server} advertised a zero window for {_secs(ns)} "
                    f"({count} segment(s)): its application stopped reading, not the network",
                    endpoint=role, packets=[first])))
        # keepalive_absent: an established connection silent for long with no keep-alive from either side
        gap = int(r[CS["max_gap"]])
        if gap >= th.keepalive_idle * NS and not (facts.keepalives["client"][row] or facts.keepalives["server"][row]) \
                and _was_established(f):
            per_flow.append((row, Finding(
                "keepalive_absent", "low", f.first_ts,
                f"established and silent for {_secs(gap)} with no keep-alives: a vanished peer would go unnoticed",
                packets=[int(r[CS["max_gap_packet"]])])))
    by_row = defaultdict(list)
    for row, a in per_flow:
        by_row[row].append(a)
    for row, found in by_row.items():
        flows[row].anomalies = list(flows[row].anomalies) + found
    over = overflowed(an)
    an.findings = rank(list(an.findings) + _rollups(flows, per_flow) + _lossy(an, set(over)) + _overflow(an, over))


def _was_established(f) -> bool:
    return any(t.new is State.ESTABLISHED for t in f.transitions) or (
        f.role_inferred and f.conn.client.state is State.ESTABLISHED)


def _rollups(flows, per_flow) -> list[Finding]:
    groups: dict[tuple, list] = {}
    for row, a in per_flow:
        f = flows[row]
        host = f.server_ip if a.endpoint == "server" else f.client_ip
        groups.setdefault((a.kind, host, f.server), []).append((f, a))
    out = []
    for (kind, host, svc), items in groups.items():
        items.sort(key=lambda fa: fa[1].ts)
        f0, a0 = items[0]
        sev = min((a.severity for _, a in items), key=SEVERITY_RANK.__getitem__)
        msg = f"flow {f0.id}: {a0.message}" if len(items) == 1 else \
            f"{len(items)} flows ({host}, service {svc}); first: flow {f0.id}: {a0.message}"
        out.append(Finding(kind, sev, a0.ts, msg, ts_end=max(a.ts_end or a.ts for _, a in items), count=len(items),
                           flows=sorted(f.id for f, _ in items)[:SAMPLE],
                           packets=[p for _, a in items[:SAMPLE] for p in a.packets][:SAMPLE], host=host, service=svc))
    return out


# Per-flow findings that already explain a flow's retransmissions by a peer that is gone or never answered:
# its retransmissions say nothing about the path.
EXPLAINED = frozenset({"vanished_peer", "fin_wait_1_unacked", "last_ack_unacked", "half_open", "unanswered_syn",
                       "syn_flood", "rejected"})


def _lossy(an, skip: set[int]) -> list[Finding]:
    """lossy_path: per host pair (client, server), retransmitted data segments over data segments (both ways).
    Left out: flows an overflowing accept queue explains (`skip`) and flows whose peer is gone (EXPLAINED):
    their retransmissions are not the network's. Control segments (SYN, FIN) are not counted: a SYN nobody
    answers is a closed port or a firewall, not loss."""
    facts, th = an.path, an.thresholds
    pairs: dict[tuple[str, str], list] = {}
    for row, f in enumerate(an.flows):
        if row in skip or any(a.kind in EXPLAINED for a in f.anomalies):
            continue
        pairs.setdefault((f.client_ip, f.server_ip), []).append(row)
    out = []
    for (cip, sip), rows in pairs.items():
        idx = np.asarray(rows)
        by = {r: int(facts.data[r][1][idx].sum()) for r in ("client", "server")}
        retx = by["client"] + by["server"]
        segs = int(facts.data["client"][0][idx].sum() + facts.data["server"][0][idx].sum())
        if not segs or retx < th.lossy_path_min_count:
            continue
        rate = retx / segs
        if rate <= th.lossy_path_rate:
            continue
        sev = "high" if rate > 5 * th.lossy_path_rate else "medium"
        fl = [an.flows[r] for r in rows]
        out.append(Finding(
            "lossy_path", sev, min(f.first_ts for f in fl),
            f"{cip} <-> {sip}: {rate:.1%} of {segs} data segments retransmitted ({by['client']} by the client side, "
            f"{by['server']} by the server side) over {len(fl)} connection(s)",
            ts_end=max(f.last_ts for f in fl), count=retx, flows=sorted(f.id for f in fl)[:SAMPLE],
            host=cip, service=sip))
    return out


def overflowed(an) -> dict[int, int]:
    """Rows of the flows whose completed handshake the server ignored -> the evidence packet: the server sent
    its SYN+ACK again after the client's ACK, or the client retransmitted data and the server never sent
    anything but its SYN+ACK (Linux drops the final ACK while the accept queue is full,
    tcp_abort_on_overflow=0: the connection never reaches the application)."""
    from ..path.segments import CS
    facts = an.path
    out = {}
    for row, f in enumerate(an.flows):
        c = int(facts.conv_of_flow[row])
        if c < 0 or not facts.cs[c, CS["first_rtt"]]:
            continue
        if facts.cs[c, CS["synack_after"]] > 0:
            out[row] = int(facts.cs[c, CS["synack_after_packet"]])
        elif facts.retx["client"][1][row] > 0 and facts.syns["server"][row] > 0 \
                and facts.segments["server"][row] == facts.syns["server"][row]:
            out[row] = int(facts.cs[c, CS["rtt_packet"]])
    return out


def _overflow(an, rows: dict[int, int]) -> list[Finding]:
    """listen_queue_overflow: per service, the flows `overflowed` found."""
    th = an.thresholds
    svc: dict[str, list] = {}
    for row, pkt in rows.items():
        f = an.flows[row]
        svc.setdefault(f.server, []).append((f, pkt))
    out = []
    for service, items in svc.items():
        if len(items) < th.listen_queue_overflow_count:
            continue
        items.sort(key=lambda fp: fp[0].first_ts)
        out.append(Finding(
            "listen_queue_overflow", "high", items[0][0].first_ts,
            f"{service}: {len(items)} client(s) completed the handshake but the server ignored it (SYN+ACK sent "
            f"again, or their data never acknowledged): its accept queue is full, the application does not "
            f"accept() fast enough",
            ts_end=max(f.last_ts for f, _ in items), count=len(items), flows=[f.id for f, _ in items][:SAMPLE],
            packets=[p for _, p in items][:SAMPLE], host=items[0][0].server_ip, service=service))
    return out
