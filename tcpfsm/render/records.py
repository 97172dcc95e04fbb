"""Plain records of an analysis, in the exact keys of the output contracts (DESIGN.md).

Every machine-readable renderer (json, jsonl, csv) starts from these dicts,
so the key names live in one place. Times are epoch seconds (float, µs).
"""
from __future__ import annotations

import json
from typing import Iterable

from ..detect.rules import Finding
from ..detect.zeek import conn_state
from ..fsm import State
from ..fsm.machine import Transition
from ..track.flowtable import Flow

NS = 1_000_000_000


def sec(ns: int | None) -> float | None:
    return None if ns is None else round(ns / NS, 6)


def transition_record(t: Transition) -> dict:
    rec = {"ts": sec(t.ts), "endpoint": t.endpoint, "from": t.old.value, "to": t.new.value,
           "packet": t.packet, "cause": t.cause}
    if t.alt is not None:
        rec["alt"] = t.alt.value
    if t.retracted:
        rec["retracted"] = True
    return rec


def transition_detail(t: Transition) -> dict:
    """The timeline's view of a transition: the contract's keys, the table's reason, whether it is an RFC
    edge, and `at`, when the endpoint changed state by the observer model (`ts` is when the tap saw the
    cause)."""
    return dict(transition_record(t), reason=t.reason, rfc_edge=t.rfc, at=sec(t.at))


def states_record(f: Flow) -> dict:
    """Each endpoint's state at the end, with `alt` where the packets could not decide between two."""
    conn = f.conn
    rec = {"client": conn.client.state.value, "server": conn.server.state.value}
    alt = {role: a.value for role, ep in (("client", conn.client), ("server", conn.server))
           if (a := conn.alt_of(ep)) is not None}
    if alt:
        rec["alt"] = alt
    return rec


def flow_anomaly_record(a: Finding) -> dict:
    return {"kind": a.kind, "severity": a.severity, "ts": sec(a.ts), "endpoint": a.endpoint, "message": a.message}


def aggregate_record(a: Finding) -> dict:
    return {"kind": a.kind, "severity": a.severity, "ts_start": sec(a.ts), "ts_end": sec(a.ts_end or a.ts),
            "count": a.count, "flows": list(a.flows), "message": a.message}


def flow_record(f: Flow) -> dict:
    c, s = f.conn.client, f.conn.server
    return {
        "id": f.id,
        "client": {"ip": f.client_ip, "port": f.client_port},
        "server": {"ip": f.server_ip, "port": f.server_port},
        "role_inferred": f.role_inferred,
        "first_ts": sec(f.first_ts),
        "last_ts": sec(f.last_ts),
        "packets": {"client": c.packets, "server": s.packets},
        "bytes": {"client": c.payload, "server": s.payload},
        "states": states_record(f),
        "conn_state": f.zeek[0] if f.zeek else conn_state(f),
        "history": f.zeek[1] if f.zeek else f.conn.history,
        "transitions": [transition_record(t) for t in f.transitions],
        "anomalies": [flow_anomaly_record(a) for a in f.anomalies],
    }


def capture_record(an) -> dict:
    i = an.info
    return {"path": i.path, "format": i.format, "compressed": i.compressed, "linktypes": i.linktypes,
            "ts_resolution": i.ts_resolution, "records": i.records, "truncated": i.truncated}


def profile_record(an) -> dict:
    return {"name": an.profile.name, **{k: getattr(an.profile, k) for k in (
        "time_wait", "fin_timeout", "syn_sent_timeout", "syn_recv_timeout", "fin_wait_1_timeout",
        "last_ack_timeout", "closing_timeout")}}


def analysis_record(an) -> dict:
    return {
        "capture": capture_record(an),
        "profile": profile_record(an),
        "flows": [flow_record(f) for f in an.flows],
        "anomalies": [aggregate_record(a) for a in an.findings],
        "summary": an.summary(),
    }


def snapshot_records(snaps) -> dict:
    return {"snapshots": [{"at": sec(s.at), "sockets": [
        {"host": r.host, "local": r.local, "remote": r.remote, "state": r.state.value, "flow": r.flow,
         **({"alt": r.alt.value} if r.alt is not None else {})}
        for r in s.sockets]} for s in snaps]}


def states_records(rows, states: Iterable[State] | None = None) -> list[dict]:
    """One record per (time, host): counts of every listed state."""
    out = []
    for t, per_host in rows:
        for host in sorted(per_host):
            out.append({"ts": sec(t), "host": host, "counts": {s.value: n for s, n in sorted(
                per_host[host].items(), key=lambda kv: list(State).index(kv[0]))}})
    return out


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False)


_ENC = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def encode(obj) -> str:
    """One line of JSON (the C encoder)."""
    return _ENC(obj)


def write_analysis_json(an, fh, spooled=None) -> None:
    """The analysis document, streamed: one line per flow and per anomaly (json's C encoder, no
    document-sized string), still a single JSON object with DESIGN.md's keys. `spooled`: a file of flows
    already encoded one per line (a streamed analysis handed them out while reading)."""
    fh.write('{"capture": ' + encode(capture_record(an)) + ',\n "profile": ' + encode(profile_record(an)))
    fh.write(',\n "flows": [')
    first = True
    if spooled is not None:
        for line in spooled:
            fh.write(("\n  " if first else ",\n  ") + line.rstrip("\n"))
            first = False
    else:
        for f in an.flows:
            fh.write(("\n  " if first else ",\n  ") + encode(flow_record(f)))
            first = False
    fh.write('\n ],\n "anomalies": [')
    for i, a in enumerate(an.findings):
        fh.write(("\n  " if i == 0 else ",\n  ") + encode(aggregate_record(a)))
    fh.write('\n ],\n "summary": ' + encode(an.summary()) + "}\n")


def _flow_events(f) -> list[tuple[int, int, dict]]:
    out = []
    for t in f.transitions:
        out.append((t.ts, 0, {"event": "transition", "ts": sec(t.ts), "flow": f.id,
                              **{k: v for k, v in transition_record(t).items() if k != "ts"}}))
    for a in f.anomalies:
        out.append((a.ts, 1, {"event": "anomaly", "ts": sec(a.ts), "flow": f.id,
                              **{k: v for k, v in flow_anomaly_record(a).items() if k != "ts"}}))
    out.append((f.last_ts, 2, {"event": "flow_end", "ts": sec(f.last_ts), **flow_record(f)}))
    return out


def flow_events(f) -> list[dict]:
    """One connection's events: its transitions, its anomalies, then flow_end (with the flow record)."""
    return [e for _, _, e in sorted(_flow_events(f), key=lambda e: (e[0], e[1]))]


def closing_events(an) -> list[dict]:
    """Aggregate anomalies, then the final stats event."""
    out = [{"event": "anomaly", "ts": sec(a.ts_end or a.ts), "flow": None, **aggregate_record(a)}
           for a in sorted(an.findings, key=lambda a: a.ts_end or a.ts)]
    out.append({"event": "stats", "ts": sec(an.end), **analysis_record_summary(an)})
    return out


def event_stream(an) -> list[dict]:
    """The analysis as time-ordered events, the JSON-lines contract shared with live mode:
    {"event": "transition" | "anomaly" | "flow_end" | "stats", "ts": ..., ...}."""
    events: list[tuple[int, int, dict]] = []
    for f in an.flows:
        events.extend(_flow_events(f))
    for a in an.findings:
        events.append((a.ts_end or a.ts, 1, {"event": "anomaly", "ts": sec(a.ts_end or a.ts), "flow": None,
                                             **aggregate_record(a)}))
    events.sort(key=lambda e: (e[0], e[1]))
    out = [e[2] for e in events]
    out.append({"event": "stats", "ts": sec(an.end), **analysis_record_summary(an)})
    return out


def analysis_record_summary(an) -> dict:
    return {"capture": capture_record(an), "profile": an.profile.name, "summary": an.summary()}
