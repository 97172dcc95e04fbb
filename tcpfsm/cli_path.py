"""The path-health commands (issue 8): `segments` and `paths`. They parse options, call the API with path
health on and pick a view (tcpfsm.path.views). Nothing else. Registered in tcpfsm.cli.COMMANDS.
"""
from __future__ import annotations

import sys

import click

from . import api
from .cli import NOTES as _NOTES, UserError, pairs
from .fsm import PROFILES
from .render.output import Output

_profile_opt = click.option("--profile", default="linux", show_default=True, type=click.Choice(sorted(PROFILES)),
                            help="OS timer profile of the endpoints (it decides where connections split).")
_timer_opt = click.option("--timer", "timers", multiple=True, metavar="NAME=SECONDS", help="Override a profile timer.")
_names_opt = click.option("-n", "numeric", is_flag=True,
                          help="Numeric addresses only: no host names learned from DNS answers in the capture "
                               "(as netstat -n). Names never come from a live lookup.")


def _analyze(capture: str, profile: str, timers, keep_segments: bool) -> api.Analysis:
    from .render import text
    an = api.analyze(capture, profile=profile, timers=pairs(timers, "timer"), keep_segments=keep_segments)
    for w in an.info.warnings:
        click.echo(f"tcpfsm: warning: {w}", err=True)
    _NOTES.append(f"tcpfsm: {text.capture_line(an)}")
    return an


def _names(an, numeric: bool):
    if numeric:
        return None
    from .path.names import names_of
    return names_of(an)


@click.command()
@click.argument("capture")
@click.option("--flow", "flow_ids", multiple=True, type=int, help="Only this flow id (repeatable).")
@click.option("--host", default=None, help="Only flows with this IP at either end.")
@click.option("--port", default=None, type=int, help="With --host: only flows using this port.")
@click.option("--format", "fmt", default="text", show_default=True,
              type=click.Choice(["text", "csv", "json", "parquet"]),
              help="parquet: the JSON's columns, `analysis` a list of strings (needs tcpfsm[arrow]; -o FILE).")
@click.option("--absolute-seq", is_flag=True, help="Raw sequence/acknowledgement numbers (default: relative to "
                                                   "each direction's ISN, as tcpdump and Wireshark print them).")
@click.option("-o", "--output", default=None, help="Write to FILE instead of stdout.")
@_names_opt
@_profile_opt
@_timer_opt
def segments(capture, flow_ids, host, port, fmt, absolute_seq, output, numeric, profile, timers):
    """One row per TCP segment with Wireshark's analysis flags (tcp.analysis.*: retransmission, duplicate_ack,
    zero_window, keep_alive ...), in capture order; packet numbers are the capture's 1-based record numbers."""
    from .path.views import write_segments
    if port is not None and host is None:
        raise UserError("--port needs --host")
    if fmt == "parquet":                    # binary: to a file or a pipe, and only with the arrow extra
        if (output is None or output == "-") and sys.stdout.isatty():
            raise UserError("parquet is binary: write it with -o FILE (or into a pipe)")
        from .render.tabular import need
        need("pyarrow.parquet")
    an = _analyze(capture, profile, timers, keep_segments=True)
    wanted = None
    if flow_ids or host:
        wanted = set(flow_ids)
        if host:
            wanted |= {f.id for f in an.flows if host in (f.client_ip, f.server_ip)
                       and (port is None or port in (f.client_port, f.server_port))}
        missing = [i for i in flow_ids if i not in {f.id for f in an.flows}]
        if missing:
            raise UserError(f"no flow {missing[0]} in {capture}")
    with Output(output) as out:
        write_segments(an, out, fmt, wanted, absolute_seq, names=_names(an, numeric) if fmt == "text" else None)


@click.command()
@click.argument("capture")
@click.option("--format", "fmt", default="text", show_default=True, type=click.Choice(["text", "json"]))
@click.option("-o", "--output", default=None, help="Write to FILE instead of stdout.")
@_names_opt
@_profile_opt
@_timer_opt
def paths(capture, fmt, output, numeric, profile, timers):
    """Per host pair, like `mtr --report`: Loss% (retransmitted data segments), Snt, Last/Avg/Best/Wrst/StDev
    RTT in ms (ACKs, Karn's rule) and the average handshake RTT."""
    import orjson
    from .path.views import path_pairs, paths_text
    an = _analyze(capture, profile, timers, keep_segments=False)
    recs = path_pairs(an)
    names = _names(an, numeric)
    with Output(output) as out:
        if fmt == "json":
            if names is not None:
                for r in recs:
                    r["client_name"], r["server_name"] = names.name(r["client"]), names.name(r["server"])
            out.write(orjson.dumps({"paths": recs}, option=orjson.OPT_INDENT_2) + b"\n")
        else:
            out.text(paths_text(recs, names))
