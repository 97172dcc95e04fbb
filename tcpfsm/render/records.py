"""Plain records of an analysis, in the exact keys of the output contracts (DESIGN.md), and their
JSON / JSON-lines serialisation.

Every machine-readable renderer (json, jsonl, csv, live) starts from these dicts, so the key names live
in one place. Times are epoch seconds (float, µs). Serialisation is orjson, or, for flow records and the
jsonl transition and flow_end events, the compiled emitter that writes orjson's bytes for them
(FlowEncoder, tcpfsm/render/_emit.py): into an `Output` (tcpfsm.render.output) one flow, one event or a
piece of about a megabyte of them at a time, never a document-sized string. orjson prints floats the
way Python's json does (shortest round-trip digits), so timestamps read the same.
"""
from __future__ import annotations

from typing import Iterable

import orjson

from ..detect.rules import Finding
from ..detect.zeek import conn_state
from ..fsm import State, Transition
from ..track.flowtable import Flow
from . import output

NS = 1_000_000_000
_US_EXACT = 4 * 10**18          # below 2**32 s, us / 1e6 is the double round(ns / 1e9, 6) gives (see sec)
_VALUE = {s: s.value for s in State}    # State -> its name, without the enum property per access
_OPTS = orjson.OPT_SERIALIZE_NUMPY
_NL = orjson.OPT_APPEND_NEWLINE | _OPTS


def sec(ns: int | None) -> float | None:
    """ns -> epoch seconds rounded to the µs. For a whole number of µs (pcap, and every pcapng
    capture with µs resolution) the µs count divided by 1e6 is that same double: both are the double
    nearest to the decimal us/10**6 (the division is correctly rounded, and ns/1e9 is within half a µs of
    it), and it costs a tenth of round()."""
    if ns is None:
        return None
    us, sub = divmod(ns, 1000)
    if not sub and -_US_EXACT < ns < _US_EXACT:
        return us / 1e6
    return round(ns / NS, 6)


def transition_record(t: Transition) -> dict:
    rec = {"ts": sec(t.ts), "endpoint": t.endpoint, "from": _VALUE[t.old], "to": _VALUE[t.new],
           "packet": t.packet, "cause": t.cause}
    if t.alt is not None:
        rec["alt"] = _VALUE[t.alt]
    if t.retracted:
        rec["retracted"] = True
    return rec


def transition_detail(t: Transition) -> dict:
    """The timeline's view of a transition: the contract's keys, the table's reason, whether it is an RFC
    edge, and `at`, when the endpoint changed state by the observer model (`ts` is when the tap saw the
    cause)."""
    return dict(transition_record(t), reason=t.reason, rfc_edge=t.rfc, at=sec(t.at))


def end_states(f: Flow) -> tuple:
    """(client state, server state, client alt, server alt) at the end: the alternatives where the packets
    could not decide between two, else None."""
    conn = f.conn
    return conn.client.state, conn.server.state, conn.alt_of(conn.client), conn.alt_of(conn.server)


def states_record(f: Flow) -> dict:
    """Each endpoint's state at the end, with `alt` where the packets could not decide between two."""
    return _states_dict(*end_states(f))


def _states_dict(client: State, server: State, client_alt: State | None, server_alt: State | None) -> dict:
    rec = {"client": _VALUE[client], "server": _VALUE[server]}
    alt = {role: _VALUE[a] for role, a in (("client", client_alt), ("server", server_alt)) if a is not None}
    if alt:
        rec["alt"] = alt
    return rec


def flow_anomaly_record(a: Finding) -> dict:
    return {"kind": a.kind, "severity": a.severity, "ts": sec(a.ts), "endpoint": a.endpoint, "message": a.message}


def aggregate_record(a: Finding) -> dict:
    return {"kind": a.kind, "severity": a.severity, "ts_start": sec(a.ts), "ts_end": sec(a.ts_end or a.ts),
            "count": a.count, "flows": list(a.flows), "message": a.message}


def flow_record(f: Flow) -> dict:
    conn = f.conn
    c, s = conn.client, conn.server
    z = f.zeek
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
        "conn_state": z[0] if z else conn_state(f),
        "history": z[1] if z else conn.history,
        "transitions": [transition_record(t) for t in f.transitions],
        "anomalies": [flow_anomaly_record(a) for a in f.anomalies],
        **_path_key(f),
    }


def kept_json(obj) -> bytes:
    """orjson's text of `obj`, for keeping: orjson's bytes carry its whole output buffer (~4 KB each,
    whatever their length), so a cache of them -- one per address a flood's records name -- costs 4 KB an
    entry (65,536 addresses: 268 MB); a copy is its own size."""
    return bytes(memoryview(orjson.dumps(obj)))


def _sec_json(ns: int) -> bytes:
    """orjson's text of sec(ns): the emitter's way out of its proven range (int(): the uncompiled emitter
    reads numpy integers, whose quotient would be a numpy float)."""
    return orjson.dumps(sec(int(ns)))


def _ip_json(f: Flow, client: bool) -> bytes:
    """The JSON text of the flow's client (or server) address, for the emitter's cache of them."""
    return kept_json(f.client_ip if client else f.server_ip)


_emit = None                                # the emitter kernel, once asked for


def _kernel():
    """The emitter kernel tcpfsm/_kernels.py picks (compiled, or its plain module), loaded once."""
    global _emit
    if _emit is None:
        from .. import _kernels
        _emit = _kernels.load("tcpfsm.render._emit")
        assert (_emit.TRANSITION, _emit.ANOMALY, _emit.FLOW_END) == (TRANSITION, ANOMALY, FLOW_END), \
            "tcpfsm/render/_emit.py puts events in another order"
    return _emit


class FlowEncoder:
    """`encode(flow_record(f))` without building the record's dicts: the compiled emitter
    (tcpfsm/render/_emit.py) reads the flow and its connection itself, the transitions from the fsm as
    columns (Connection.transition_rows), the path record from the path analysis' columns
    (PathFacts.json_columns), and writes their JSON; strings are encoded by orjson, each distinct one once.
    What only other modules know it asks of the functions they own (conn_state, facts_of).
    tests/test_emit.py holds the bytes equal to orjson's of flow_record on every capture. One encoder per
    rendering: it keeps the emitter's buffer and what it has encoded. `kernel`: the emitter module to use
    (the tests pass each form), else the one tcpfsm/_kernels.py picks."""

    def __init__(self, kernel=None):
        from ..fsm import TRANSITION_ROW
        from ..path.flows import facts_of
        kernel = kernel or _kernel()
        assert kernel.ROW == TRANSITION_ROW, "tcpfsm/render/_emit.py reads another transition row"
        self._em = kernel.Emitter(list(State), [kept_json(s.value) for s in State], _sec_json, _ip_json,
                                  conn_state, facts_of, encode, _connection_json)

    def __call__(self, f: Flow) -> bytes:
        return self._em.record(f)

    def write(self, flows: Iterable[Flow], write, first: bytes, sep: bytes) -> None:
        """The records of `flows`, `first` before the first and `sep` between them, into the byte sink
        function `write` in pieces of about output.CHUNK bytes (views of a reused buffer: `write` must copy
        or write them out, as Output.write and BytesIO.write do)."""
        self._em.flows(flows, write, first, sep, output.CHUNK)

    def write_events(self, keys, write) -> None:
        """The jsonl lines of `_event_keys`' sorted keys into `write`, as `write` above hands them out."""
        self._em.events(keys, write, _event_line, output.CHUNK)

    def transition_event(self, f: Flow, t: Transition) -> bytes:
        """encode(transition_event(f, t)) and its newline: the connection's keys encoded once per flow."""
        return self._em.transition_event(f, t)

    def flow_end(self, f: Flow) -> bytes:
        """encode(flow_end_event(f))."""
        return self._em.flow_end(f)


def _path_key(f: Flow) -> dict:
    """{"path": ...} when path health was analysed for this flow (tcpfsm.path), else nothing."""
    from ..path.flows import path_record
    p = path_record(f)
    return {} if p is None else {"path": p}


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
        {"host": r.host, "local": r.local, "remote": r.remote, "state": _VALUE[r.state], "flow": r.flow,
         **({"alt": _VALUE[r.alt]} if r.alt is not None else {})}
        for r in s.sockets]} for s in snaps]}


def states_records(rows, states: Iterable[State] | None = None) -> list[dict]:
    """One record per (time, host): counts of every listed state."""
    order = {s: i for i, s in enumerate(State)}
    out = []
    for t, per_host in rows:
        for host in sorted(per_host):
            out.append({"ts": sec(t), "host": host, "counts": {s.value: n for s, n in sorted(
                per_host[host].items(), key=lambda kv: order[kv[0]])}})
    return out


# -- serialisation --------------------------------------------------------------------------------
def dumps(obj) -> str:
    """A small document, indented (timeline, netstat, states)."""
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | _OPTS).decode("utf-8")


def encode(obj) -> bytes:
    """One line of JSON, without the newline."""
    return orjson.dumps(obj, option=_OPTS)


def write_analysis_json(an, out, spooled=None) -> None:
    """The analysis document into the byte sink `out` (an Output), one flow at a time: still a single JSON
    object with DESIGN.md's keys, one line per flow and per anomaly. `spooled`: a binary file of flows
    already encoded one per line (a streamed analysis handed them out while reading)."""
    w = out.write
    w(b'{"capture": ' + encode(capture_record(an)) + b',\n "profile": ' + encode(profile_record(an)))
    w(b',\n "flows": [')
    if spooled is not None:
        _write_spooled(spooled, w)
    else:
        FlowEncoder().write(an.flows, w, b"\n  ", b",\n  ")
    w(b'\n ],\n "anomalies": [')
    sep = b"\n  "
    for a in an.findings:
        w(sep + encode(aggregate_record(a)))
        sep = b",\n  "
    w(b'\n ],\n "summary": ' + encode(an.summary()) + b"}\n")


def _write_spooled(spooled, w) -> None:
    """Records already encoded, one per line, as the document's flows: "\\n  " before the first and ",\\n  "
    before each other, the separators written by one bytes.replace a block (a record never holds a newline:
    orjson escapes them in strings) rather than one write a flow. Each block's last byte waits for the next
    block: the stream's very last newline only ends the last record."""
    first, pending = True, b""
    for block in _spool_blocks(spooled):
        if first:
            w(b"\n  ")
            first = False
        w((pending + block[:-1]).replace(b"\n", b",\n  "))
        pending = block[-1:]
    if pending != b"\n":
        w(pending)                      # (a last record without its newline)


def _spool_blocks(spooled):
    """A binary file's blocks of about output.CHUNK bytes; or, for an iterable of records (with or without
    their newlines), blocks of newline-ended records."""
    if hasattr(spooled, "read"):
        yield from iter(lambda: spooled.read(output.CHUNK), b"")
        return
    batch: list[bytes] = []
    for line in spooled:
        batch.append(line.rstrip(b"\n"))
        if len(batch) >= 1024:
            yield b"\n".join(batch) + b"\n"
            batch = []
    if batch:
        yield b"\n".join(batch) + b"\n"


# -- events (JSON lines, shared with live mode) ---------------------------------------------------
TRANSITION, ANOMALY, FLOW_END = 0, 1, 2      # order of events at the same instant


def connection(f: Flow) -> dict:
    """What names a connection in every per-flow event: `flow` (its id) and both ends as {ip, port}, so a
    reader of one line (jq, a log shipper) knows which connection moved without waiting for its end."""
    return {"flow": f.id, "client": {"ip": f.client_ip, "port": f.client_port},
            "server": {"ip": f.server_ip, "port": f.server_port}}


def transition_event(f: Flow, t: Transition) -> dict:
    ev = {"event": "transition", "ts": sec(t.ts), **connection(f), "endpoint": t.endpoint,
          "from": _VALUE[t.old], "to": _VALUE[t.new], "packet": t.packet, "cause": t.cause}
    if t.alt is not None:
        ev["alt"] = _VALUE[t.alt]
    if t.retracted:
        ev["retracted"] = True
    return ev


def anomaly_event(f: Flow, a: Finding) -> dict:
    return {"event": "anomaly", "ts": sec(a.ts), **connection(f), "kind": a.kind, "severity": a.severity,
            "endpoint": a.endpoint, "message": a.message}


def _flow_end_head(f: Flow) -> dict:
    return {"event": "flow_end", "ts": sec(f.last_ts), "flow": f.id}


def flow_end_event(f: Flow) -> dict:
    return {**_flow_end_head(f), **flow_record(f)}


def flow_end_json(f: Flow, flow_json: FlowEncoder) -> bytes:
    """encode(flow_end_event(f)), written by `flow_json` (no key of the head is one of the flow record's)."""
    return flow_json.flow_end(f)


def _connection_json(f: Flow) -> bytes:
    """connection(f)'s keys as JSON text without the braces: what every event of the flow repeats."""
    return orjson.dumps(connection(f), option=_OPTS)[1:-1]


def _event_line(f: Flow | None, item) -> bytes:
    """A jsonl line the emitter leaves to orjson: a flow's anomaly, or (no flow) an aggregate one."""
    return orjson.dumps(_anomaly_event(f, item) if f is not None else _aggregate_event(item), option=_NL)


_transition_event, _anomaly_event, _flow_end_event = transition_event, anomaly_event, flow_end_event


def _aggregate_event(a: Finding) -> dict:
    return {"event": "anomaly", "ts": sec(a.ts_end or a.ts), "flow": None, **aggregate_record(a)}


def _stats_event(an) -> dict:
    return {"event": "stats", "ts": sec(an.end), **analysis_record_summary(an)}


_MAKE = (_transition_event, _anomaly_event, lambda f, _: _flow_end_event(f))


def flow_events(f: Flow) -> list[dict]:
    """One connection's events: its transitions, its anomalies, then flow_end (with the flow record)."""
    return [_MAKE[k[1]](f, k[4]) for k in _flow_event_keys(f)]


def _flow_event_keys(f: Flow) -> list:
    keys: list = []
    _kernel().event_keys((f,), keys, 0)
    keys.sort()
    return keys


def write_flow_events(f: Flow, out, flow_json: FlowEncoder) -> None:
    """`flow_events(f)` as JSON lines into the byte sink `out`, written by `flow_json` (a streamed jsonl
    analysis, as each connection is handed out)."""
    flow_json.write_events(_flow_event_keys(f), out.write)


def closing_events(an) -> list[dict]:
    """Aggregate anomalies, then the final stats event."""
    out = [_aggregate_event(a) for a in sorted(an.findings, key=lambda a: a.ts_end or a.ts)]
    out.append(_stats_event(an))
    return out


def _event_keys(an) -> list:
    """Every event of the analysis as a sort key (_emit.event_keys' tuples; aggregate findings have no
    flow), sorted."""
    from ..api import gc_paused
    keys: list = []
    with gc_paused():       # ~10 tuples a connection, of the analysis' objects: nothing for the collector
        seq = _kernel().event_keys(an.flows, keys, 0)
        for a in an.findings:
            keys.append((a.ts_end or a.ts, ANOMALY, seq, None, a))
            seq += 1
        keys.sort()
    return keys


def event_stream(an) -> list[dict]:
    """The analysis as time-ordered events, the JSON-lines contract shared with live mode:
    {"event": "transition" | "anomaly" | "flow_end" | "stats", "ts": ..., ...}."""
    out = [_MAKE[order](f, item) if f is not None else _aggregate_event(item)
           for _, order, _, f, item in _event_keys(an)]
    out.append(_stats_event(an))
    return out


def write_event_stream(an, out) -> None:
    """`event_stream(an)` as JSON lines into the byte sink `out`, each event encoded as it is made: the
    sort keeps only (time, order, seq, object) per event, never the dicts of the whole stream."""
    FlowEncoder().write_events(_event_keys(an), out.write)
    out.write(orjson.dumps(_stats_event(an), option=_NL))


def write_events(events: Iterable[dict], out) -> None:
    """Events (dicts) as JSON lines into the byte sink `out`."""
    w, dumps_, opt = out.write, orjson.dumps, _NL
    for e in events:
        w(dumps_(e, option=opt))


def analysis_record_summary(an) -> dict:
    return {"capture": capture_record(an), "profile": an.profile.name, "summary": an.summary()}
