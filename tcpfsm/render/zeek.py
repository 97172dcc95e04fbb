"""Zeek conn.log writers: the TSV ASCII log (with Zeek's header lines) and Zeek's JSON log style.

    write_conn_log(conns, fh, fmt="tsv")    # or fmt="json"

`conns` are `tcpfsm.zeek.ZeekConn` records. Formats follow Zeek's ASCII writer: tab separated,
times and intervals with 6 decimals, booleans T/F, unset fields '-', empty sets '(empty)';
JSON: one object per line, dotted key names ("id.orig_h"), unset fields left out, times as
epoch seconds.
"""
from __future__ import annotations

import json
import time
from typing import Iterable

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
          "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp", "missed_bytes", "history",
          "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents")
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count", "count",
         "string", "bool", "bool", "count", "string", "count", "count", "count", "count", "set[string]")
_ATTR = {"id.orig_h": "orig_h", "id.orig_p": "orig_p", "id.resp_h": "resp_h", "id.resp_p": "resp_p"}


def _values(z) -> list:
    return [getattr(z, _ATTR.get(f, f)) for f in FIELDS]


def _tsv(v, typ: str) -> str:
    if v is None:
        return "-"
    if typ in ("time", "interval"):
        return f"{v:.6f}"
    if typ == "bool":
        return "T" if v else "F"
    if typ.startswith("set["):
        return ",".join(v) if v else "(empty)"
    if isinstance(v, str):
        if v == "":
            return "(empty)"
        return v.replace("\\", "\\\\").replace("\t", "\\x09").replace("\n", "\\x0a")
    return str(v)


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(t))


def write_conn_log(conns: Iterable, fh, fmt: str = "tsv", open_time: float | None = None,
                   close_time: float | None = None) -> None:
    """Write conn.log lines to the text file `fh`. `open_time`/`close_time` (epoch s) stamp the #open/#close
    headers; Zeek uses the wall clock, which is the default here too."""
    if fmt == "json":
        enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        for z in conns:
            rec = {}
            for f, typ, v in zip(FIELDS, TYPES, _values(z)):
                if v is None:
                    continue
                if typ in ("time", "interval"):
                    v = round(v, 6)
                rec[f] = v
            fh.write(enc(rec) + "\n")
        return
    if fmt != "tsv":
        raise ValueError(f"unknown conn.log format {fmt!r} (tsv or json)")
    fh.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n")
    fh.write(f"#open\t{_stamp(time.time() if open_time is None else open_time)}\n")
    fh.write("#fields\t" + "\t".join(FIELDS) + "\n")
    fh.write("#types\t" + "\t".join(TYPES) + "\n")
    for z in conns:
        fh.write("\t".join(_tsv(v, t) for v, t in zip(_values(z), TYPES)) + "\n")
    fh.write(f"#close\t{_stamp(time.time() if close_time is None else close_time)}\n")
