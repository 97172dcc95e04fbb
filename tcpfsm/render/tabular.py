"""Columnar hand-off: flows, transitions and segments as typed columns, written as Parquet (pyarrow, the
optional extra `tcpfsm[arrow]`) or handed to pandas (`Analysis.to_pandas()`).

The column names are the CSV's for flows (plus typed lists and the undecided `alt` states), the
timeline JSON's for transitions, with each row naming its connection, and the `segments` JSON's for
segments (`analysis` a list of strings, plus the CSV's `duplicate_ack_num`, 0 when not a duplicate ACK); times are epoch seconds
(float64, as in the JSON) and also `*_time` UTC timestamps for tools that want a time type. Owns layout only.
"""
from __future__ import annotations

from ..detect.zeek import conn_state
from .records import sec

FLOW_COLUMNS = ["id", "client_ip", "client_port", "server_ip", "server_port", "role_inferred", "first_ts",
                "last_ts", "packets_client", "packets_server", "bytes_client", "bytes_server", "state_client",
                "state_server", "alt_client", "alt_server", "conn_state", "history", "anomalies"]
TRANSITION_COLUMNS = ["flow", "client_ip", "client_port", "server_ip", "server_port", "ts", "at", "endpoint",
                      "from", "to", "packet", "cause", "reason", "rfc_edge", "alt", "retracted"]


SEGMENT_COLUMNS = ["packet", "ts", "flow", "endpoint", "flags", "seq", "ack", "len", "win", "analysis",
                   "duplicate_ack_num"]


class MissingExtra(ValueError):
    """pyarrow / pandas not installed: a user error with the install line."""


def _need(module: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{module} is not installed: pip install 'tcpfsm[arrow]'") from None


def need(module: str):
    """Import `module` of the arrow extra, or raise MissingExtra naming the install line."""
    return _need(module)


def flow_rows(flows) -> dict[str, list]:
    cols: dict[str, list] = {k: [] for k in FLOW_COLUMNS}
    for f in flows:
        c, s = f.conn.client, f.conn.server
        z = f.zeek
        ca, sa = f.conn.alt_of(c), f.conn.alt_of(s)
        for k, v in (("id", f.id), ("client_ip", f.client_ip), ("client_port", f.client_port),
                     ("server_ip", f.server_ip), ("server_port", f.server_port),
                     ("role_inferred", bool(f.role_inferred)), ("first_ts", sec(f.first_ts)),
                     ("last_ts", sec(f.last_ts)), ("packets_client", c.packets), ("packets_server", s.packets),
                     ("bytes_client", c.payload), ("bytes_server", s.payload), ("state_client", c.state.value),
                     ("state_server", s.state.value), ("alt_client", ca.value if ca is not None else None),
                     ("alt_server", sa.value if sa is not None else None),
                     ("conn_state", z[0] if z else conn_state(f)), ("history", z[1] if z else f.conn.history),
                     ("anomalies", sorted({a.kind for a in f.anomalies}))):
            cols[k].append(v)
    return cols


def transition_rows(flows) -> dict[str, list]:
    cols: dict[str, list] = {k: [] for k in TRANSITION_COLUMNS}
    for f in flows:
        for t in f.transitions:
            for k, v in (("flow", f.id), ("client_ip", f.client_ip), ("client_port", f.client_port),
                         ("server_ip", f.server_ip), ("server_port", f.server_port), ("ts", sec(t.ts)),
                         ("at", sec(t.at)), ("endpoint", t.endpoint), ("from", t.old.value), ("to", t.new.value),
                         ("packet", t.packet), ("cause", t.cause), ("reason", t.reason), ("rfc_edge", bool(t.rfc)),
                         ("alt", t.alt.value if t.alt is not None else None), ("retracted", bool(t.retracted))):
                cols[k].append(v)
    return cols


def _schema(what: str):
    pa = _need("pyarrow")
    port, s, i64, f64, b = pa.uint16(), pa.string(), pa.int64(), pa.float64(), pa.bool_()
    if what == "flows":
        types = [i64, s, port, s, port, b, f64, f64, i64, i64, i64, i64, s, s, s, s, s, s, pa.list_(s)]
        fields = list(zip(FLOW_COLUMNS, types))
        fields += [("first_time", pa.timestamp("us", tz="UTC")), ("last_time", pa.timestamp("us", tz="UTC"))]
    else:
        types = [i64, s, port, s, port, f64, f64, s, s, s, i64, s, s, b, s, b]
        fields = list(zip(TRANSITION_COLUMNS, types)) + [("time", pa.timestamp("us", tz="UTC"))]
    return pa.schema(fields)


def arrow_table(what: str, flows):
    """flows or transitions of `flows` as a pyarrow Table (schema fixed, also when empty)."""
    pa = _need("pyarrow")
    cols = flow_rows(flows) if what == "flows" else transition_rows(flows)
    if what == "flows":
        cols["first_time"] = [round(x * 1e6) for x in cols["first_ts"]]
        cols["last_time"] = [round(x * 1e6) for x in cols["last_ts"]]
    else:
        cols["time"] = [round(x * 1e6) for x in cols["ts"]]
    schema = _schema(what)
    return pa.Table.from_arrays([pa.array(cols[f.name], type=f.type) for f in schema], schema=schema)


class ParquetSink:
    """Parquet into a byte sink (tcpfsm.render.output.Output), row group by row group: a streamed
    analysis hands flows over while reading and memory stays bounded by `rows` flows."""

    def __init__(self, what: str, out, rows: int = 65536):
        pq = _need("pyarrow.parquet")
        self.what, self.rows, self.pending = what, rows, []
        self.file = _OutputFile(out)
        self.writer = pq.ParquetWriter(self.file, _schema(what), compression="zstd")

    def add(self, flow) -> None:
        self.pending.append(flow)
        if len(self.pending) >= self.rows:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(arrow_table(self.what, self.pending))
            self.pending = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


class _OutputFile:
    """The file object pyarrow writes to: every byte goes through Output (checked writes, one-line errors)."""

    def __init__(self, out):
        self.out, self.pos, self.closed = out, 0, False

    def write(self, data) -> int:
        b = bytes(data)
        self.out.write(b)
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def write_parquet(what: str, flows, out) -> None:
    sink = ParquetSink(what, out)
    for f in flows:
        sink.add(f)
    sink.close()


def _segment_schema():
    pa = _need("pyarrow")
    i64 = pa.int64()
    types = [i64, pa.float64(), i64, pa.string(), pa.string(), i64, i64, i64, i64, pa.list_(pa.string()), i64]
    return pa.schema(list(zip(SEGMENT_COLUMNS, types)) + [("time", pa.timestamp("us", tz="UTC"))])


def segments_table(rows):
    """(record of the `segments` JSON contract, duplicate ACK number or 0) pairs as a pyarrow Table."""
    pa = _need("pyarrow")
    schema = _segment_schema()
    cols: dict[str, list] = {k: [] for k in SEGMENT_COLUMNS}
    for rec, dup in rows:
        for k in SEGMENT_COLUMNS[:-1]:
            cols[k].append(rec[k])
        cols["duplicate_ack_num"].append(dup)
    cols["time"] = [round(x * 1e6) for x in cols["ts"]]
    return pa.Table.from_arrays([pa.array(cols[f.name], type=f.type) for f in schema], schema=schema)


def write_segments_parquet(rows, out, chunk: int = 65536) -> int:
    """The `segments` view as Parquet into `out` (an Output), `chunk` segments a row group: `rows` yields
    (record of the JSON contract, duplicate ACK number or 0), as tcpfsm.path.views.segment_rows does.
    Returns the number of rows."""
    import itertools
    pq = _need("pyarrow.parquet")
    writer = pq.ParquetWriter(_OutputFile(out), _segment_schema(), compression="zstd")
    n = 0
    rows = iter(rows)
    while True:
        part = list(itertools.islice(rows, chunk))
        if part or n == 0:
            writer.write_table(segments_table(part))
        n += len(part)
        if len(part) < chunk:
            break
    writer.close()
    return n


def to_pandas(an, what: str = "flows"):
    """flows, transitions, or (of an analysis run with keep_segments=True) segments as a DataFrame."""
    if what not in ("flows", "transitions", "segments"):
        raise ValueError(f"to_pandas({what!r}): expected 'flows', 'transitions' or 'segments'")
    _need("pandas")
    if what == "segments":
        if getattr(an, "path_segments", None) is None:
            raise ValueError("to_pandas('segments') needs the per-segment rows: "
                             "tcpfsm.analyze(path, keep_segments=True)")
        from ..path.views import segment_rows
        return segments_table((rec, dup) for rec, dup, _, _ in segment_rows(an)).to_pandas()
    try:
        return arrow_table(what, an.flows).to_pandas()
    except MissingExtra:                       # pandas without pyarrow: plain columns
        import pandas as pd
        return pd.DataFrame(flow_rows(an.flows) if what == "flows" else transition_rows(an.flows))
