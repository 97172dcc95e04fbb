"""`tcpfsm live` and `tcpfsm analyze --follow`: option parsing and wiring only.

Errors the user can fix (no privilege, unknown interface, bad filter, bad option) are one line on stderr
and exit 2, through `tcpfsm.cli.main`. Ctrl-C / SIGTERM stop the capture, print the final summary and
exit 0.
"""
from __future__ import annotations

import math
import sys

import click
from rich.console import Console

from ..capture.batch import CaptureError
from ..cli import pairs
from ..detect.rules import Thresholds
from ..fsm import CAPTURE_POINTS, PROFILES, get_profile
from ..fsm.profiles import OVERRIDABLE
from .backends import BACKENDS, LiveError, make_backend, pick_backend
from .engine import Engine
from .follow import FileFollower, StdinFollower
from .sinks import DashboardSink, JsonlSink


def _settings(profile: str, timers, thresholds):
    try:
        prof = get_profile(profile, **pairs(timers, "timer"))
        th = Thresholds().override(**pairs(thresholds, "threshold"))
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    return prof, th


def _sink(fmt: str, output: str | None, title: str):
    fh = None
    if output and output != "-":
        try:
            fh = open(output, "w", encoding="utf-8")
        except OSError as e:
            raise click.ClickException(f"cannot write {output}: {e.strerror}") from None
    if fmt == "auto":
        fmt = "dashboard" if fh is None and sys.stdout.isatty() else "jsonl"
    if fmt == "dashboard":
        return DashboardSink(Console(file=fh) if fh else Console(), title=title), fh
    return JsonlSink(fh or sys.stdout), fh


def _warn(info) -> None:
    for w in info.warnings:
        click.echo(f"tcpfsm: warning: {w}", err=True)


@click.command("live")
@click.option("-i", "--interface", "iface", required=True, help="Interface to capture on (lo, eth0, any...).")
@click.option("-f", "--filter", "bpf", default=None, metavar="BPF", help="Capture filter (tcpdump syntax).")
@click.option("--duration", type=float, default=None, metavar="S", help="Stop after S seconds.")
@click.option("--count", type=int, default=None, metavar="N", help="Stop after N packets.")
@click.option("--write", "write", default=None, metavar="FILE.pcap", help="Also save the packets to a pcap file.")
@click.option("--format", "fmt", default="auto", show_default=True,
              type=click.Choice(["auto", "dashboard", "jsonl"]),
              help="auto: the dashboard on a terminal, JSON lines otherwise.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(["auto", *BACKENDS]),
              help="auto: tcpdump (libpcap's ring buffer) when installed, else a raw AF_PACKET socket.")
@click.option("-o", "--output", default=None, help="Write events / the dashboard to FILE instead of stdout.")
@click.option("--profile", default="linux", show_default=True, type=click.Choice(sorted(PROFILES)))
@click.option("--capture-point", default="auto", show_default=True, type=click.Choice(CAPTURE_POINTS),
              help="Where this interface sits on the connections' paths (see `tcpfsm analyze --help`).")
@click.option("--timer", "timers", multiple=True, metavar="NAME=SECONDS",
              help=f"Override a profile timer ({', '.join(OVERRIDABLE)}).")
@click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
              help="Override a finding threshold (see `tcpfsm analyze --help`).")
@click.option("--stats-interval", type=float, default=5.0, show_default=True, help="Seconds between stats events.")
@click.option("--tick", type=float, default=0.2, show_default=True, help="Timer resolution in seconds.")
@click.option("--linger", type=float, default=None,
              help="Seconds a finished connection stays in the table before its flow_end event (default: the "
                   "flow table's stale_after, 10 s).")
@click.option("--max-flows", type=int, default=200_000, show_default=True, help="Cap on tracked connections.")
@click.option("--snaplen", type=click.IntRange(min=68), default=None,
              help="Bytes kept per packet (default 256: the headers are all tcpfsm needs, and a small snaplen keeps "
                   "libpcap's ring from overflowing; 262144 with --write, so the saved pcap is whole).")
@click.option("--buffer", "buffer_mb", type=int, default=64, show_default=True, help="Kernel capture buffer (MiB).")
def live(iface, bpf, duration, count, write, fmt, backend, output, profile, timers, thresholds, stats_interval,
         tick, linger, max_flows, snaplen, buffer_mb, capture_point="auto"):
    """Watch connections on an interface as they happen: states, timers on the wall clock, findings."""
    prof, th = _settings(profile, timers, thresholds)
    for name, v in (("--tick", tick), ("--stats-interval", stats_interval), ("--duration", duration),
                    ("--linger", linger)):
        if v is not None and not (math.isfinite(v) and v > 0):     # (NaN compares false with everything)
            raise click.UsageError(f"{name} must be a positive number of seconds")
    try:
        if snaplen is None:
            snaplen = 262144 if write else 256
        src = make_backend(backend, iface, bpf, write=write, snaplen=snaplen, bufsize_mb=buffer_mb)
        src.start()
    except LiveError as e:
        raise click.ClickException(str(e)) from None
    sink, fh = _sink(fmt, output, f"tcpfsm live -i {iface} ({pick_backend(backend)})")
    eng = Engine(src, prof, th, sink, clock="wall", tick=tick, stats_every=stats_interval, linger=linger,
                 max_flows=max_flows, count=count, duration=duration, capture_point=capture_point)
    try:
        eng.run()
    finally:
        if eng.stop_reason == "" and src is not None:       # an exception: still stop the capture cleanly
            try:
                src.stop()
            except Exception:
                pass
        if fh:
            fh.close()
    _warn(src.info)


def follow_capture(capture: str, fmt: str = "jsonl", output: str | None = None, profile: str = "linux",
                   timers=(), thresholds=(), tick: float = 0.2, stats_interval: float = 5.0, linger: float | None = None,
                   capture_point: str = "auto"):
    """`tcpfsm analyze --follow FILE|-`: the same events as `live`, from a capture still being written (or a
    pcap stream on stdin). A file is followed until Ctrl-C / SIGTERM; stdin until its end."""
    prof, th = _settings(profile, timers, thresholds)
    src = StdinFollower() if capture == "-" else FileFollower(capture)
    mode = {"table": "auto", "jsonl": "jsonl", "json": "jsonl", "csv": "jsonl"}.get(fmt, "auto")
    sink, fh = _sink(mode, output, f"tcpfsm analyze --follow {capture}")
    eng = Engine(src, prof, th, sink, clock="capture", tick=tick, stats_every=stats_interval, linger=linger,
                 capture_point=capture_point)
    try:
        eng.run()
    except CaptureError:
        raise
    finally:
        if fh:
            fh.close()
    _warn(src.info)
