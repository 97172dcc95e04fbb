"""The commands of the command line (analyze, timeline, netstat, states, report, graph): they parse
options, call the API and pick a renderer. Nothing else.

Split from `tcpfsm.cli` (the group, `main()` and its error handling) so that `tcpfsm --version`, a
mistyped command or a shell completion never import numpy, networkx or rich: `tcpfsm.cli` loads this
module only when one of these commands runs or --help lists them.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager

import click
from . import api
from .cli import NOTES as _NOTES, UserError, pairs
from .detect.rules import Thresholds
from .fsm import CAPTURE_POINTS, PROFILES, rfc_graph
from .fsm.profiles import OVERRIDABLE
from .render import records, text
from .render.output import Output


STREAM_ABOVE = 1 << 30       # analyze streams (bounded memory) captures larger than this by default


def _interval(s: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?", s.strip())
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"bad interval {s!r}: expected e.g. 1s, 500ms, 5m")
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def _captures(capture):
    """The CAPTURE... arguments: one path as itself (a single file reads as before), several (or a directory,
    a glob) as a list, read as one capture (tcpfsm.capture.multi)."""
    if isinstance(capture, str):
        return capture
    if len(capture) == 1 and (capture[0] == "-" or os.path.isfile(capture[0])):
        return capture[0]
    return list(capture)


def _size(capture) -> int | None:
    """Bytes of the capture file(s), for progress and the streaming default (None for stdin, a pattern)."""
    paths = [capture] if isinstance(capture, str) else capture
    if any(p == "-" or not os.path.isfile(p) for p in paths):
        return None
    return sum(os.path.getsize(p) for p in paths)


def _load(capture, profile: str, timers: tuple[str, ...], thresholds: tuple[str, ...] = (),
          end: str | None = None, engine: str = "fast", verify_checksums: bool = False,
          capture_point: str = "auto", workers: int | None = None, scheduler: str | None = None,
          workdir: str | None = None, use=None) -> api.Analysis:
    """The analysis of CAPTURE; `use(an)`: what the command does with it -- on Dask, called while the
    cluster is up, the connections staying on the workers (netstat and state counts ask them there)."""
    capture = _captures(capture)
    dask = workers is not None or bool(scheduler)
    if dask:
        an = _dask_analyze(capture, workers, scheduler, workdir=workdir, profile=profile, timers=pairs(timers, "timer"),
                           thresholds=pairs(thresholds, "threshold"), end=end, engine=engine,
                           verify_checksums=verify_checksums, capture_point=capture_point, render=use)
    else:
        an = api.analyze(capture, profile=profile, timers=pairs(timers, "timer"),
                         thresholds=pairs(thresholds, "threshold"), end=end, engine=engine,
                         verify_checksums=verify_checksums, capture_point=capture_point)
    for w in an.info.warnings:
        click.echo(f"tcpfsm: warning: {w}", err=True)
    _NOTES.append(f"tcpfsm: {text.capture_line(an)}")     # nothing skipped silently (printed on success)
    if use is not None and not dask:
        use(an)
    return an


def _dask_analyze(capture, workers, scheduler, quiet: bool = False, workdir: str | None = None,
                  **kw) -> api.Analysis:
    """The distributed run (tcpfsm.distributed), with a progress bar over its tasks on a terminal."""
    from . import distributed
    with TaskProgress(enabled=not quiet) as prog:
        return distributed.analyze(capture, workers=workers or None, scheduler=scheduler, progress=prog.update,
                                   workdir=workdir, **kw)


def _dist_opts(f):
    """--workers and --scheduler: the run on a Dask cluster (needs tcpfsm[dask])."""
    f = click.option("--workdir", default=None, metavar="DIR",
                     help="With --workers/--scheduler: the decoded segments, each partition's connections and "
                          "its rendered output wait in DIR between stages (a path every worker can reach), not "
                          "in worker memory; removed at the end. --workers over 256 MB of input uses the "
                          "temporary directory unless given.")(f)
    f = click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
                     help="Run on this existing Dask cluster (its workers must be able to read the files: a "
                          "shared path). Needs tcpfsm[dask].")(f)
    return click.option("--workers", default=None, type=click.IntRange(min=0), metavar="N",
                        help="Run on a local Dask cluster of N worker processes (0: one per core), the "
                             "connections partitioned among them; same answers as one process (path health "
                             "and Zeek's view excepted). Needs tcpfsm[dask].")(f)


def _write(out: str | None, data: str) -> None:
    with Output(out) as o:
        o.text(data)


def _stream(out: str | None, writer) -> None:
    """`writer(sink)` writes bytes into an Output on `out` (a path, or stdout for None / "-")."""
    with Output(out) as o:
        writer(o)


_NATURAL = 10_000        # columns: wider than any table, which rich then prints at its own width


def _view_opts(f):
    """The options every view of one capture takes: timer profile, capture point, timers, end, checksums."""
    for opt in reversed((_profile_opt, _point_opt, _timer_opt, _end_opt, _verify_opt)):
        f = opt(f)
    return f


@contextmanager
def _console(out: str | None, width: int | None = None):
    """A rich Console writing through an Output (checked writes, quiet on a closed pipe). `width`: --width;
    tables then wrap their cells at spaces to fit it (never inside a word: see text.show)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:   # rich would exit 1 itself: let main() end it quietly
            raise BrokenPipeError

    with Output(out) as o:
        # Not a terminal (a file, a pipe): tables at their natural width, nothing elided -- rich would
        # squeeze them to 80 columns and cut addresses and state names -- and no padding at line ends.
        if o.owned:
            f = _TrimLines(o.text_file())
            yield _Console(file=f, width=width or _NATURAL, color_system=None)
            f.flush()
        elif not sys.stdout.isatty():
            f = _TrimLines(o.text_file())
            yield _Console(file=f, width=width or _NATURAL)
            f.flush()
        else:
            yield _Console(file=o.text_file(), width=width)


class _TrimLines:
    """A text file that drops the spaces rich pads lines with (tables fill their last column), so text in a
    file or pipe has no trailing blanks; what is not yet a whole line waits for its end."""

    def __init__(self, f):
        self._f = f
        self._tail = ""

    def write(self, s: str) -> int:
        text = self._tail + s
        cut = text.rfind("\n") + 1
        self._tail = text[cut:]
        if cut:
            self._f.write("\n".join(line.rstrip(" ") for line in text[:cut].split("\n")))
        return len(s)

    def flush(self) -> None:
        if self._tail:
            self._f.write(self._tail)
            self._tail = ""
        self._f.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._f.fileno()


_width_opt = click.option("--width", default=None, type=click.IntRange(min=20), metavar="N",
                          help="Lay tables out for N columns (default: the terminal's width; natural width "
                               "in a pipe or file). Cells wrap at spaces; nothing is ever cut.")


def _filter_opts(f):
    """--port and --state, the `lsof -i:PORT` and `ss state S` questions."""
    f = click.option("--state", "state_specs", multiple=True, metavar="S",
                     help="Only this state (repeatable): RFC (SYN_RECEIVED, FIN_WAIT_1), netstat (SYN_RECV, "
                          "FIN_WAIT1) or ss (syn-recv, fin-wait-1) spelling, any case.")(f)
    return click.option("--port", default=None, type=click.IntRange(0, 65535),
                        help="Only sockets with this port at either end (lsof -i:PORT).")(f)


def _binary_ok(output: str | None) -> None:
    """Parquet is binary: to a file or a pipe, never onto a terminal; and it needs the arrow extra."""
    if (output is None or output == "-") and sys.stdout.isatty():
        raise UserError("parquet is binary: write it with -o FILE (or into a pipe)")
    from .render.tabular import _need
    _need("pyarrow.parquet")


def _states_arg(specs) -> frozenset | None:
    if not specs:
        return None
    try:
        return api.parse_states(specs)
    except ValueError as e:
        raise UserError(str(e)) from None


_profile_opt = click.option("--profile", default="linux", show_default=True, type=click.Choice(sorted(PROFILES)),
                            help="OS timer profile of the endpoints.")
_timer_opt = click.option("--timer", "timers", multiple=True, metavar="NAME=SECONDS",
                          help=f"Override a profile timer ({', '.join(OVERRIDABLE)}).")
_engine_opt = click.option("--engine", default="fast", show_default=True, type=click.Choice(api.ENGINES),
                           help="Decoder: fast (compiled kernel), dpkt (reference), tshark (Wireshark's dissectors).")
_point_opt = click.option("--capture-point", default="auto", show_default=True, type=click.Choice(CAPTURE_POINTS),
                          help="Where the capture was taken on each connection's path: next to the client, "
                               "next to the server, in the middle, or estimated per connection from its "
                               "handshake (auto). It sets when a segment seen here reached, or left, each "
                               "endpoint.")
_verify_opt = click.option("--verify-checksums", is_flag=True,
                           help="Segments with a bad TCP checksum count as never received (dropped before the "
                                "state machines; counted). Off by default: checksum offload makes a capture "
                                "taken on the sending host show every outgoing segment as bad.")
_end_opt = click.option("--end", default=None, metavar="T",
                        help="When the capture stopped, if after its last packet (quiet link): timers and ages "
                             "run up to T.")


@click.command()
@click.argument("capture", nargs=-1, required=True)
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "brief", "json", "jsonl", "csv", "parquet", "zeek", "zeek-json"]),
              help="parquet: the flows as a Parquet file (needs tcpfsm[arrow]). "
                   "brief: the story on one screen (findings, piles, the connections behind them grouped, "
                   "one ladder). zeek / zeek-json: a Zeek conn.log (TSV or JSON lines) from Zeek's own "
                   "connection rules.")
@click.option("-o", "--output", default=None, help="Write to FILE instead of stdout.")
@_profile_opt
@_point_opt
@_timer_opt
@click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
              help=f"Override a finding threshold ({', '.join(Thresholds.names())}).")
@click.option("--max-flows", default=25, show_default=True, help="Flows listed in the table report.")
@_width_opt
@_end_opt
@click.option("--timings", is_flag=True, help="Print seconds per stage (read+decode, track, detect, render) on "
                                                "stderr as one JSON line.")
@click.option("--stream/--no-stream", default=None,
              help="Bounded memory: emit and forget finished connections while reading (default: on for "
                   f"files over {STREAM_ABOVE >> 30} GiB).")
@click.option("--max-tracked", default=None, type=click.IntRange(min=100),
              help="Cap on connections tracked at once (default: an eighth of a GiB's worth, less on small machines; "
                   "the summary shows it). Over it, half-open attempts are summarised in the findings and not "
                   "listed; with --stream finished, then half-open, then longest idle connections are evicted. "
                   "Evictions are counted by reason.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--follow", is_flag=True, help="Follow a capture still being written (tcpdump -w FILE, or - for a "
                                             "pcap stream on stdin): live events, timers on the clock.")
@_engine_opt
@click.option("--zeek", "zeek", is_flag=True, help="Take each flow's conn_state/history from Zeek's own "
                                                    "connection logic (slower; implied by --format zeek).")
@_verify_opt
@_dist_opts
@click.option("--zeek-ignore-checksums", is_flag=True,
              help="Zeek view like `zeek -C`: bad-checksum segments are processed (default: discarded, "
                   "history letter C/c).")
def analyze(capture, fmt, output, profile, timers, thresholds, max_flows, end, timings, stream, max_tracked,
            quiet, engine, zeek, follow=False, verify_checksums=False, zeek_ignore_checksums=False,
            capture_point="auto", width=None, workers=None, scheduler=None, workdir=None):
    """Findings ranked by severity, per-host state piles and the flows that matter. CAPTURE: one file, or
    several (a directory, a glob) read as one capture."""
    capture = _captures(capture)
    if follow:  # live mode (tcpfsm/live): JSON-line events, or the dashboard on a terminal
        if not isinstance(capture, str):
            raise UserError("--follow reads one capture")
        from .live.cli import follow_capture
        return follow_capture(capture, fmt, output, profile, timers, thresholds, capture_point=capture_point)
    zeek = zeek or fmt in ("zeek", "zeek-json")
    if fmt == "parquet":
        _binary_ok(output)
    dask = workers is not None or bool(scheduler)
    if dask and (zeek or stream):
        raise UserError("--workers/--scheduler: Zeek's view and --stream are not available on Dask")
    if stream is None:
        size = _size(capture)
        stream = not dask and not zeek and size is not None and size > STREAM_ABOVE
    sink = FlowSink(fmt, output, max_flows, width) if stream else None
    # on Dask, json, jsonl and csv are rendered by the partitions and streamed through the driver in flow order:
    # the driver never holds the connections (tcpfsm.distributed); other formats gather them
    on_workers = dask and fmt in ("json", "jsonl", "csv")
    if dask:
        from . import distributed
        an = _dask_analyze(capture, workers, scheduler, quiet=quiet, workdir=workdir, profile=profile,
                           timers=pairs(timers, "timer"),
                           thresholds=pairs(thresholds, "threshold"), end=end, engine=engine,
                           verify_checksums=verify_checksums, capture_point=capture_point,
                           render=(lambda a: _stream(output, lambda o: distributed.write(a, o)))
                           if on_workers else None, fmt=fmt if on_workers else None)
    else:
        with Progress(capture, enabled=not quiet) as prog:
            an = api.analyze(capture, profile=profile, timers=pairs(timers, "timer"),
                             thresholds=pairs(thresholds, "threshold"), end=end, stream=stream,
                             on_flow=sink.add if sink else None, progress=prog.update,
                             max_flows=max_tracked, engine=engine, zeek=zeek,
                             verify_checksums=verify_checksums, zeek_ignore_checksums=zeek_ignore_checksums,
                             capture_point=capture_point)
    for w in an.info.warnings:
        click.echo(f"tcpfsm: warning: {w}", err=True)
    t0 = time.perf_counter()
    if sink:
        sink.finish(an)
    elif not on_workers:
        _render_analysis(an, fmt, output, max_flows, width)
    if timings:
        stages = dict(an.timings, render=round(time.perf_counter() - t0, 4))
        stages["total"] = round(stages.get("total", 0) + stages["render"], 4)
        click.echo(json.dumps({"timings": {k: round(v, 4) for k, v in stages.items()},
                               "records": an.info.records, "tcp_segments": an.info.tcp_segments,
                               "flows": an.summary()["flows"] if on_workers else len(an.flows) + an.streamed,
                               "streamed": bool(stream)}), err=True)


def _render_analysis(an, fmt, output, max_flows, width=None):
    if fmt in ("zeek", "zeek-json"):
        from .render.zeek import write_conn_log
        _stream(output, lambda o: write_conn_log(an.zeek_conns, o.text_file(),
                                                 fmt="tsv" if fmt == "zeek" else "json"))
    elif fmt == "json":
        _stream(output, lambda o: records.write_analysis_json(an, o))
    elif fmt == "jsonl":
        _stream(output, lambda o: records.write_event_stream(an, o))
    elif fmt == "csv":
        _stream(output, lambda o: text.write_flows_csv(an.flows, o))
    elif fmt == "parquet":
        from .render import tabular
        _stream(output, lambda o: tabular.write_parquet("flows", an.flows, o))
    elif fmt == "brief":
        from .render.report import flow_segments
        with _console(output, width) as con:
            text.brief(an, con, segments=flow_segments)
    else:
        with _console(output, width) as con:
            text.report(an, con, max_flows)


class FlowSink:
    """Where a streamed analysis puts each finished connection the moment it is handed out."""

    def __init__(self, fmt: str, output: str | None, max_flows: int, width: int | None = None):
        self.fmt, self.output, self.max_flows, self.width = fmt, output, max_flows, width
        self.top: list = []                   # table: the most severe flows seen, bounded
        self.spool = None
        self.out = None
        self.parquet = None
        if fmt in ("jsonl", "csv", "parquet"):
            self.out = Output(output)
            if fmt == "jsonl":
                self.flow_json = records.FlowEncoder()
            elif fmt == "csv":
                self.out.text(text.flows_csv_header())
            elif fmt == "parquet":                # row groups written while reading: memory stays bounded
                from .render import tabular
                self.parquet = tabular.ParquetSink("flows", self.out)
        elif fmt == "json":
            self.spool = tempfile.TemporaryFile("w+b")   # flows, until the header is known
            self.flow_json = records.FlowEncoder()

    def add(self, flow) -> None:
        if self.fmt == "json":
            self.spool.write(self.flow_json(flow) + b"\n")
        elif self.fmt == "jsonl":
            records.write_flow_events(flow, self.out, self.flow_json)
        elif self.fmt == "csv":
            text.write_flows_csv((flow,), self.out, header=False)
        elif self.fmt == "parquet":
            self.parquet.add(flow)
        elif flow.anomalies:
            self.top.append(flow)
            if len(self.top) > 4 * self.max_flows:
                self.top = text.rank_flows(self.top)[:self.max_flows]

    def finish(self, an) -> None:
        if self.fmt == "json":          # the connections still held, a line each (encoded in large pieces)
            self.flow_json.write(an.flows, self.spool.write, b"", b"\n")
            if an.flows:
                self.spool.write(b"\n")
            self.spool.seek(0)
            _stream(self.output, lambda o: records.write_analysis_json(an, o, spooled=self.spool))
            self.spool.close()
            return
        for f in an.flows:
            self.add(f)
        if self.fmt == "jsonl":
            with self.out:
                records.write_events(records.closing_events(an), self.out)
        elif self.fmt == "csv":
            self.out.close()
        elif self.fmt == "parquet":
            with self.out:
                self.parquet.close()
        else:
            with _console(self.output, self.width) as con:
                if self.fmt == "brief":
                    text.brief(an, con)
                else:
                    text.report(an, con, self.max_flows, flows=self.top)


class Progress:
    """A progress line on stderr (rich) when stderr is a terminal: packets, packets/s, connections tracked,
    and how far into the file. Nothing on non-terminals or with --quiet."""

    def __init__(self, capture, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty()
        self.size = _size(capture)
        self.bar = None
        self.t0 = time.perf_counter()

    def __enter__(self):
        if self.enabled:
            from rich.console import Console as _C
            from rich.progress import BarColumn, Progress as _P, TextColumn, TimeElapsedColumn
            self.bar = _P(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                          TimeElapsedColumn(), console=_C(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("reading", total=self.size or None, info="")
        return self

    def update(self, info, tracked: int) -> None:
        if not self.bar:
            return
        dt = max(time.perf_counter() - self.t0, 1e-6)
        done = getattr(info, "bytes_read", None)
        self.bar.update(self.task, completed=done if done is not None else None,
                        info=f"{info.records:,} packets, {info.records / dt:,.0f}/s, {tracked:,} connections")

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()
        return False


class TaskProgress:
    """A progress bar over a Dask run's tasks (decode per file, track per partition) on a terminal's stderr."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None
        self.tasks: dict[str, object] = {}

    def __enter__(self):
        if self.enabled:
            from rich.console import Console as _C
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as _P, TextColumn, TimeElapsedColumn
            self.bar = _P(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=_C(stderr=True), transient=True)
            self.bar.start()
        return self

    def update(self, stage: str, done: int, total: int) -> None:
        if not self.bar:
            return
        if stage not in self.tasks:
            what = {"decode": "decoding files", "track": "tracking partitions",
                    "number": "numbering partitions", "judge": "judging partitions"}.get(stage, stage)
            self.tasks[stage] = self.bar.add_task(what, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()
        return False


@click.command()
@click.argument("capture", nargs=-1, required=True)
@_dist_opts
@click.option("--flow", "flow_ids", multiple=True, type=int, help="Flow id (repeatable).")
@click.option("--host", default=None, help="Flows with this IP at either end.")
@click.option("--port", default=None, type=click.IntRange(0, 65535),
              help="Flows with this port at either end (with --host: that host's own port).")
@click.option("--state", "state_specs", multiple=True, metavar="S",
              help="Flows in which an endpoint held this state (repeatable; RFC, netstat or ss spelling).")
@click.option("--format", "fmt", default="text", show_default=True,
              type=click.Choice(["text", "json", "md", "parquet"]),
              help="parquet: one row per transition, naming its connection (needs tcpfsm[arrow]).")
@click.option("-o", "--output", default=None)
@_view_opts
def timeline(capture, flow_ids, host, port, fmt, output, profile, timers, end, verify_checksums=False,
             capture_point="auto", state_specs=(), workers=None, scheduler=None, workdir=None):
    """A ladder per flow: time, endpoint, old -> new state, the packet and the cause."""
    wanted = _states_arg(state_specs)
    if fmt == "parquet":
        _binary_ok(output)

    def show(an):                    # (on Dask, the partitions choose the flows: only those come to the driver)
        try:
            flows = an.select(host, port, wanted, flow_ids)
        except ValueError as e:
            raise UserError(str(e)) from None
        if fmt == "parquet":
            from .render import tabular
            _stream(output, lambda o: tabular.write_parquet("transitions", flows, o))
        elif fmt == "json":
            _write(output, records.dumps({"flows": [{
                "id": f.id, "client": {"ip": f.client_ip, "port": f.client_port},
                "server": {"ip": f.server_ip, "port": f.server_port},
                "observer": f.conn.obs.as_dict(),
                "transitions": [records.transition_detail(t) for t in f.transitions],
                "anomalies": [records.flow_anomaly_record(a) for a in f.anomalies],
                "icmp": text.icmp_errors(f)} for f in flows]}) + "\n")
        else:
            _write(output, text.timeline_text(flows, markdown=fmt == "md", tunnels=getattr(an.info, "tunnels", None),
                                              files=getattr(an.info, "files", None)))
    _load(capture, profile, timers, (), end, verify_checksums=verify_checksums, capture_point=capture_point,
          workers=workers, scheduler=scheduler, workdir=workdir, use=show)


@click.command()
@click.argument("capture", nargs=-1, required=True)
@_dist_opts
@click.option("--at", "ats", multiple=True, required=True,
              help="Epoch seconds, ISO 8601, HH:MM:SS (capture's day, local time) or +12.5s (repeatable).")
@click.option("--host", default=None, help="Only this host's sockets, as its own netstat would list them.")
@click.option("--format", "fmt", default="text", show_default=True, type=click.Choice(["text", "json"]))
@click.option("--no-listen", is_flag=True, help="Leave out listeners inferred from answered SYNs.")
@_filter_opts
@click.option("-o", "--output", default=None)
@_profile_opt
@_point_opt
@_timer_opt
@_verify_opt
def netstat(capture, ats, host, fmt, no_listen, output, profile, timers, verify_checksums=False,
            capture_point="auto", port=None, state_specs=(), workers=None, scheduler=None, workdir=None):
    """What `netstat -nat` would have shown at each --at (one pass over the capture)."""
    wanted = _states_arg(state_specs)

    def show(an):
        try:
            snaps = an.netstat_many(list(ats), host, listening=not no_listen, port=port, states=wanted)
        except ValueError as e:
            raise UserError(str(e)) from None
        if fmt == "json":
            _write(output, records.dumps(records.snapshot_records(snaps)) + "\n")
        else:
            _write(output, text.netstat_text(snaps, header=text.capture_line(an)))
    _load(capture, profile, timers, verify_checksums=verify_checksums, capture_point=capture_point,
          workers=workers, scheduler=scheduler, workdir=workdir, use=show)


@click.command()
@click.argument("capture", nargs=-1, required=True)
@_dist_opts
@click.option("--interval", default="1s", show_default=True, help="Sampling interval: 1s, 500ms, 5m.")
@click.option("--host", default=None, help="Only this host's sockets.")
@click.option("--by-host", is_flag=True, help="Table: one line per host per sample (default: summed over hosts).")
@_filter_opts
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "csv", "json"]))
@click.option("-o", "--output", default=None)
@_view_opts
def states(capture, interval, host, fmt, output, profile, timers, end, verify_checksums=False,
           capture_point="auto", by_host=False, port=None, state_specs=(), workers=None, scheduler=None, workdir=None):
    """State counts over time, like `sar -n SOCK`: one line per interval, netstat's state names as columns
    (csv/json: per host)."""
    step = _interval(interval)
    wanted = _states_arg(state_specs)

    def show(an):
        try:
            rows = an.states(step, host, port=port, states=wanted)
        except ValueError as e:
            raise UserError(f"{e}") from None
        if fmt == "json":
            _write(output, records.dumps({"interval": step, "samples": records.states_records(rows)}) + "\n")
        elif fmt == "csv":
            _write(output, text.states_csv(rows, wanted))
        else:
            _write(output, text.states_text(rows, host=host, by_host=by_host, states=wanted, interval=step))
    _load(capture, profile, timers, (), end, verify_checksums=verify_checksums, capture_point=capture_point,
          workers=workers, scheduler=scheduler, workdir=workdir, use=show)


@click.command()
@click.argument("capture", nargs=-1, required=True)
@_dist_opts
@click.option("-o", "--output", default=None, help="report.md or report.html (the suffix picks the format); "
                                                  "stdout (Markdown) when omitted.")
@click.option("--format", "fmt", default=None, type=click.Choice(["md", "html"]), help="Overrides the suffix.")
@click.option("--max-flows", default=10, show_default=True,
              help="Connections drawn as sequence diagrams (Markdown: ladders); the others are listed.")
@_profile_opt
@_point_opt
@_timer_opt
@_end_opt
def report(capture, output, fmt, max_flows, profile, timers, end, capture_point="auto", workers=None,
           scheduler=None, workdir=None):
    """A self-contained Markdown or HTML incident report. HTML: summary, findings linked to their evidence,
    per-host state charts, sequence diagrams of the connections that matter, the observed transitions."""
    from .render.report import html_report, markdown
    fmt = fmt or ("html" if output and output.endswith((".html", ".htm")) else "md")
    an = _load(capture, profile, timers, (), end, capture_point=capture_point, workers=workers,
               scheduler=scheduler, workdir=workdir)
    _write(output, html_report(an, max_flows) if fmt == "html" else markdown(an, max_flows))


@click.command("graph")
@click.argument("capture", required=False)
@click.option("--what", default="transitions", show_default=True, type=click.Choice(["transitions", "hosts"]),
              help="With a CAPTURE: the state transitions observed (edges with counts, non-RFC ones marked), "
                   "or the hosts (nodes) and their connections (edges with final states and findings).")
@click.option("--format", "fmt", default="json", show_default=True, type=click.Choice(["json", "graphml", "dot"]))
@click.option("-o", "--output", default=None, help="Write to FILE instead of stdout.")
@_view_opts
def graph(capture, what, fmt, output, profile, timers, end, verify_checksums=False, capture_point="auto"):
    """Export a graph: without CAPTURE, the RFC 9293 state graph (plus this tool's extra edges, marked
    rfc=false); with one, what was observed in it (--what transitions|hosts)."""
    if capture is None:
        return _rfc_graph(fmt, output)
    from .render import graphs
    an = _load(capture, profile, timers, (), end, verify_checksums=verify_checksums, capture_point=capture_point)
    g = graphs.transition_graph(an) if what == "transitions" else graphs.host_graph(an)
    _write(output, {"json": graphs.to_json, "graphml": graphs.to_graphml, "dot": graphs.to_dot}[fmt](g))


def _rfc_graph(fmt: str, output: str | None) -> None:
    import networkx as nx
    g = rfc_graph()
    if fmt == "json":
        _write(output, json.dumps(nx.node_link_data(g, edges="edges"), indent=2) + "\n")
    elif fmt == "graphml":
        _write(output, "\n".join(nx.generate_graphml(g)) + "\n")
    else:
        lines = ["digraph tcp {"]
        for a, b, d in g.edges(data=True):
            style = "" if d.get("rfc") else " [style=dashed]"
            lines.append(f'  "{a}" -> "{b}"{style};')
        _write(output, "\n".join(lines + ["}"]) + "\n")
