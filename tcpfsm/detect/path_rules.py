"""Findings that need path facts (issue 8): lossy_path, slow_handshake, zero_window_stall, keepalive_absent,
listen_queue_overflow, icmp_unreachable.

Owns these kinds' rules, severities and messages; thresholds live with the others in `Thresholds` (each
overridable by name). Reads the analysis' flows and their path facts (tcpfsm.path.flows.PathFacts); per-flow
findings go on the flow (its `anomalies`, as the other per-flow kinds) and are rolled up per (kind, host,
service) into the analysis' findings; per host pair and per service ones are aggregate findings.
Must not: change a state or a path fact.
"""
from __future__ import annotations

from collections import defaultdict
from operator import attrgetter

import numpy as np

from ..fsm import State
from .rules import SEVERITY_RANK, Finding, _secs, rank

NS = 1_000_000_000
SAMPLE = 1000                      # flow ids kept per aggregate finding


def path_findings(an) -> None:
    """Add the path findings to `an` (flows' anomalies, an.findings). The rules' tests run column-wise over
    every flow (numpy); Python looks only at the flows they pick (see `_over`), in row order."""
    from ..path.segments import CS
    facts, th = an.path, an.thresholds
    flows = an.flows
    conv = facts.conv_of_flow
    rows = np.flatnonzero(conv >= 0)
    m = facts.cs[conv[rows]]                   # each flow's conversation row
    # slow_handshake: connect latency from the first SYN to the ACK completing the handshake, retries included
    rtt, syn0 = m[:, CS["first_rtt"]], m[:, CS["first_syn_ts"]]
    lat = (m[:, CS["mru_syn"]].astype(np.float64) - syn0) + rtt
    slow = rows[(rtt != 0) & (syn0 != 0) & _over(lat, th.slow_handshake * NS)]
    # zero_window_stall: the receiver's application stopped reading (not the network)
    stall = {role: rows[(facts.zw[role][0][rows] != 0) & _over(facts.zw[role][1][rows], th.zero_window_stall * NS)]
             for role in ("client", "server")}
    # keepalive_absent: an established connection silent for long with no keep-alive from either side
    idle = rows[_over(m[:, CS["max_gap"]], th.keepalive_idle * NS)
                & (facts.keepalives["client"][rows] == 0) & (facts.keepalives["server"][rows] == 0)]
    picked = set(slow.tolist())
    picked.update(stall["client"].tolist(), stall["server"].tolist(), idle.tolist())
    per_flow: list[tuple[int, Finding]] = []
    for row in sorted(picked):
        f = flows[row]
        r = facts.cs[int(conv[row])]
        if r[CS["first_rtt"]] and r[CS["first_syn_ts"]]:
            done = int(r[CS["mru_syn"]]) + int(r[CS["first_rtt"]])     # (Python ints: times near int64's end)
            lat = done - int(r[CS["first_syn_ts"]])
            if lat > th.slow_handshake * NS:
                syns = int(facts.syns["client"][row])
                sev = "medium" if lat >= th.slow_connect * NS else "low"
                retries = f", {syns - 1} SYN retransmission(s)" if syns > 1 else ""
                per_flow.append((row, Finding(
                    "slow_handshake", sev, int(r[CS["first_syn_ts"]]),
                    f"connect to {f.server} took {_secs(lat)} (handshake RTT {_secs(int(r[CS['first_rtt']]))}{retries})",
                    ts_end=done, endpoint="client", packets=[f.first_packet, int(r[CS["rtt_packet"]])])))
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
    # a router's "fragmentation needed" / "packet too big" explains the flow's retransmissions (path MTU
    # discovery): neither loss nor an ignoring server
    pmtu = _pmtu_rows(an)
    over = {r: p for r, p in overflowed(an).items() if r not in pmtu}
    an.findings = rank(list(an.findings) + _rollups(flows, per_flow) + _lossy(an, set(over) | pmtu)
                       + _overflow(an, over) + _icmp_unreachable(an))


def _over(x: np.ndarray, limit: float) -> np.ndarray:
    """Where `x` (ns, int64 or float64) may reach `limit`: a float test with a margin (1 ms) far above its
    rounding, so that it picks every flow the exact test (Python ints against the float threshold, as the
    rules state it) would, and that test decides."""
    return x.astype(np.float64) >= limit - 1e6


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
    answers is a closed port or a firewall, not loss. Summed per pair column-wise; pairs in order of their
    first flow counted."""
    facts, th = an.path, an.thresholds
    flows = an.flows
    nf = len(flows)
    keep = np.ones(nf, bool)
    keep[list(skip)] = False
    for row, found in enumerate(map(attrgetter("anomalies"), flows)):
        if found and any(a.kind in EXPLAINED for a in found):
            keep[row] = False
    rows = np.flatnonzero(keep)
    if not len(rows):
        return []
    code = facts.pair_codes()[rows]
    npairs = int(code.max()) + 1

    def per_pair(col: np.ndarray) -> np.ndarray:
        out = np.zeros(npairs, np.int64)
        np.add.at(out, code, col[rows])
        return out

    by = {r: per_pair(facts.data[r][1]) for r in ("client", "server")}
    retx = by["client"] + by["server"]
    segs = per_pair(facts.data["client"][0]) + per_pair(facts.data["server"][0])
    cand = np.flatnonzero((segs != 0) & (retx >= th.lossy_path_min_count))
    if not len(cand):
        return []
    order = np.argsort(code, kind="stable")           # each pair's rows, in row order
    bounds = np.searchsorted(code[order], np.arange(npairs + 1))
    first_row = np.full(npairs, nf, np.int64)
    np.minimum.at(first_row, code, rows)
    out = []
    for p in sorted(cand.tolist(), key=first_row.__getitem__):
        rate = int(retx[p]) / int(segs[p])
        if rate <= th.lossy_path_rate:
            continue
        sev = "high" if rate > 5 * th.lossy_path_rate else "medium"
        fl = [flows[r] for r in rows[order[bounds[p]:bounds[p + 1]]].tolist()]
        cip, sip = fl[0].client_ip, fl[0].server_ip
        out.append(Finding(
            "lossy_path", sev, min(f.first_ts for f in fl),
            f"{cip} <-> {sip}: {rate:.1%} of {int(segs[p])} data segments retransmitted ({int(by['client'][p])} by "
            f"the client side, {int(by['server'][p])} by the server side) over {len(fl)} connection(s)",
            ts_end=max(f.last_ts for f in fl), count=int(retx[p]), flows=sorted(f.id for f in fl)[:SAMPLE],
            host=cip, service=sip))
    return out


def overflowed(an) -> dict[int, int]:
    """Rows of the flows whose completed handshake the server ignored -> the evidence packet: the server sent
    its SYN+ACK again after the client's ACK, or the client retransmitted data and the server never sent
    anything but its SYN+ACK (Linux drops the final ACK while the accept queue is full,
    tcp_abort_on_overflow=0: the connection never reaches the application). Column-wise over the flows."""
    from ..path.segments import CS
    facts = an.path
    conv = facts.conv_of_flow
    rows = np.flatnonzero(conv >= 0)
    r = facts.cs[conv[rows]]
    done = r[:, CS["first_rtt"]] != 0
    again = done & (r[:, CS["synack_after"]] > 0)
    syns = facts.syns["server"][rows]
    ignored = done & ~again & (facts.retx["client"][1][rows] > 0) & (syns > 0) \
        & (facts.segments["server"][rows] == syns)
    packet = np.where(again, r[:, CS["synack_after_packet"]], r[:, CS["rtt_packet"]])
    hit = again | ignored
    return dict(zip(rows[hit].tolist(), packet[hit].tolist()))


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


def _pmtu_rows(an) -> set[int]:
    """Rows of the flows that got an ICMP "fragmentation needed" (IPv4 3/4) or "packet too big" (ICMPv6 2)."""
    icmp = getattr(an, "icmp", None)
    if icmp is None or not len(icmp):
        return set()
    c = icmp.cols
    big = ((c["family"] == 4) & (c["type"] == 3) & (c["code"] == 4)) | ((c["family"] == 6) & (c["type"] == 2))
    return {int(r) for r in icmp.flow_row[big & (icmp.flow_row >= 0)].tolist()}


def _icmp_unreachable(an) -> list[Finding]:
    """icmp_unreachable: per target service (the quoted destination), the ICMP errors that Linux turns into a
    connect()/socket error (destination unreachable but fragmentation needed, packet too big's IPv6 kin
    excluded; time exceeded; parameter problem), with counts by type/code and by sending router. High when
    they ended connects. Each flow an error ended also gets the finding (its anomalies)."""
    from ..capture.icmp import aborts_connect, error_name, linux_errno
    from ..track.flowtable import hostport, ip_text
    icmp = getattr(an, "icmp", None)
    if icmp is None or not len(icmp):
        return []
    th = an.thresholds
    c = icmp.cols
    by_svc: dict[str, list[int]] = {}
    for i in range(len(icmp)):
        fam, typ, code = int(c["family"][i]), int(c["type"][i]), int(c["code"][i])
        if aborts_connect(fam, typ, code):
            svc = hostport(ip_text(bytes(c["q_dst"][i])), int(c["q_dport"][i]))
            by_svc.setdefault(svc, []).append(i)
    flows = an.flows
    out = []
    for svc, idx in by_svc.items():
        if len(idx) < th.icmp_unreachable_count:
            continue
        kinds, routers, failed = {}, {}, []
        for i in idx:
            name = error_name(int(c["family"][i]), int(c["type"][i]), int(c["code"][i]))
            kinds[name] = kinds.get(name, 0) + 1
            r = ip_text(bytes(c["sender"][i]))
            routers[r] = routers.get(r, 0) + 1
            row = int(icmp.flow_row[i])
            if row >= 0:
                f = flows[row]
                end = next((t for t in f.transitions if t.packet == int(c["index"][i]) and not t.retracted
                            and t.cause.startswith("icmp:")), None)
                if end is not None:
                    errno = linux_errno(int(c["family"][i]), int(c["type"][i]), int(c["code"][i]))
                    failed.append(f)
                    f.anomalies = list(f.anomalies) + [Finding(
                        "icmp_unreachable", "high", end.ts,
                        f"connect to {f.server} failed: {name} from {r} answered its SYN ({errno})",
                        endpoint="client", packets=[f.first_packet, int(c["index"][i])], host=f.client_ip,
                        service=f.server)]
        ts = [int(c["ts"][i]) for i in idx]
        tied = sorted({flows[int(icmp.flow_row[i])].id for i in idx if icmp.flow_row[i] >= 0})
        what = ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
        who = ", ".join(f"{k} x{v}" for k, v in sorted(routers.items(), key=lambda kv: (-kv[1], kv[0])))
        msg = (f"{svc}: {len(idx)} ICMP error(s) ({what}) from {who}"
               + (f"; {len(failed)} connect(s) failed" if failed else ""))
        out.append(Finding("icmp_unreachable", "high" if failed else "medium", min(ts), msg, ts_end=max(ts),
                           count=len(idx), flows=tied[:SAMPLE], packets=[int(c["index"][i]) for i in idx][:SAMPLE],
                           host=svc.rsplit(":", 1)[0].strip("[]"), service=svc))
    return out
