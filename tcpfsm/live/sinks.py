"""Where live events go: JSON lines (the contract of `analyze --format jsonl`) or a rich dashboard."""
from __future__ import annotations

import fcntl
import io
import os
import stat
import sys
import time
from collections import Counter, defaultdict

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..detect.occupancy import LISTED
from ..detect.rules import SEVERITY_RANK
from ..fsm import NETSTAT_NAME, State
from ..render import records, text
from ..render.records import sec


def _widen_pipe(fh, size: int = 1 << 20) -> None:
    """A pipe as output holds 1 MiB instead of 64 KiB: at 100 k packets/s the events are ~30 MB/s, and a
    full pipe stops the analysis until the reader catches up (a write per turn; 64 KiB is ~2 ms of them)."""
    try:
        fd = fh.fileno()
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, 1031, size)             # F_SETPIPE_SZ (capped by /proc/sys/fs/pipe-max-size)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass


class JsonlSink:
    """One event per line: {"event": "transition" | "anomaly" | "flow_end" | "stats", "ts": ..., ...}, with the
    record builders of the offline JSON and its bytes: transitions and flow_end lines are written by the
    offline stream's compiled emitter (records.FlowEncoder: the same bytes as `analyze --format jsonl` for the
    same event, without a dict per event), the rest by records.encode. Lines are kept as bytes and written
    once per tick to the binary layer of `fh` (its `buffer` when it is a text stream)."""

    def __init__(self, fh=None):
        self.fh = fh or sys.stdout
        # bytes go to a text stream's binary layer (stdout), or to the file itself when it is binary
        self._bin = getattr(self.fh, "buffer", None if isinstance(self.fh, io.TextIOBase) else self.fh)
        self._lines: list[bytes] = []
        self._enc = records.FlowEncoder()
        _widen_pipe(self._bin)
        self.broken = False
        self.engine = None

    def _put(self, ev: dict) -> None:
        self._lines.append(records.encode(ev) + b"\n")

    def start(self, engine) -> None:
        """A first stats event as soon as the capture runs (packets 0): readers can start traffic then."""
        self.engine = engine
        self.stats(engine.stats_record(), engine.now)

    # per-flow events are the offline stream's (records.*_event): each names its connection (flow, client,
    # server); live adds when it was detected
    def transition(self, flow, t) -> None:
        self._lines.append(self._enc.transition_event(flow, t))

    def transitions(self, items) -> None:
        """Many (flow, transition) at once, in order (the engine's turn)."""
        ev = self._enc.transition_event
        self._lines += [ev(f, t) for f, t in items]

    def anomaly(self, flow, a, now: int) -> None:
        self._put(dict(records.anomaly_event(flow, a), detected=sec(now)))

    def aggregate(self, a, now: int) -> None:
        self._put({"event": "anomaly", "ts": sec(a.ts_end or a.ts), "flow": None, **records.aggregate_record(a),
                   "detected": sec(now)})

    def flow_end(self, flow, now: int) -> None:
        self._lines.append(records.flow_end_json(flow, self._enc) + b"\n")

    def stats(self, rec: dict, now: int) -> None:
        self._put({"event": "stats", "ts": sec(now), **rec})
        self.flush()

    def tick(self, engine) -> None:
        self.flush()

    def flush(self) -> None:
        if not self._lines or self.broken:
            self._lines.clear()
            return
        data = b"".join(self._lines)
        self._lines.clear()
        try:
            if self._bin is not None:
                self.fh.flush()             # (anything written to the text layer goes first)
                self._bin.write(data)
                self._bin.flush()
            else:
                self.fh.write(data.decode("utf-8"))
                self.fh.flush()
        except BrokenPipeError:
            self.broken = True
            if self.engine is not None:
                self.engine.request_stop("output closed")
        except OSError:
            self.broken = True
            if self.engine is not None:
                self.engine.request_stop("output error")

    def final(self, an, rec: dict, end: int) -> None:
        self._put({"event": "stats", "ts": sec(end), "final": True, **rec,
                   **records.analysis_record_summary(an)})
        self.flush()


class DashboardSink:
    """A rich Live view: state counts (netstat -nat | uniq -c), per-host piles, newest findings, the flows
    that matter, packets/s and drops. At the end, the same report as `tcpfsm analyze`."""

    def __init__(self, console: Console | None = None, title: str = "", refresh: float = 0.5):
        self.console = console or Console()
        self.title = title
        self.refresh = refresh
        self.live: Live | None = None
        self._next = 0.0
        self.engine = None

    def start(self, engine) -> None:
        self.engine = engine
        self.live = Live(self.render(engine), console=self.console, refresh_per_second=4, transient=False,
                         redirect_stderr=False)
        self.live.start()

    # events are shown through the engine's state; nothing to do per event
    def transition(self, flow, t) -> None:
        pass

    def transitions(self, items) -> None:
        pass

    def anomaly(self, flow, a, now) -> None:
        pass

    def aggregate(self, a, now) -> None:
        pass

    def flow_end(self, flow, now) -> None:
        pass

    def stats(self, rec, now) -> None:
        pass

    def tick(self, engine) -> None:
        t = time.monotonic()
        if self.live is not None and t >= self._next:
            self._next = t + self.refresh
            self.live.update(self.render(engine))

    def render(self, engine):
        """One screen, sized to the console (80x24 at least): a two-line header, state counts beside the
        per-host piles, then as many newest findings and flows that matter as the height leaves room for.
        Addresses and state names are never cut; a finding's message keeps its first line here (the
        report printed at the end has it whole)."""
        st = engine.stats_record()
        d = st["drops"]
        drops = "n/a" if d.get("dropped") is None else f"{d['dropped']} of {d['received']} ({d['source']})"
        head = Text.assemble((self.title or "tcpfsm live", "bold"),
                             f"  up {st['uptime']:.0f} s  {st['packets']} packets  {st['pps']:.0f} pkt/s  "
                             f"drops {drops}\n"
                             f"flows {st['flows_tracked']} tracked / {st['flows_total']} seen  "
                             f"evicted {sum(st['evicted'].values())}  "
                             f"latency p50 {st['latency_ms'].get('p50', '-')} ms")
        per_host: dict[str, Counter] = defaultdict(Counter)
        totals: Counter = Counter()
        for f in engine.table.current.values():
            for ip, ep in ((f.client_ip, f.conn.client), (f.server_ip, f.conn.server)):
                if ep.state in LISTED:
                    per_host[ip][ep.state] += 1
                    totals[ep.state] += 1
        counts = Table(title="all hosts", box=box.SIMPLE, title_justify="left", padding=(0, 1),
                       show_edge=False)
        counts.add_column("count", justify="right")
        counts.add_column("state", no_wrap=True)
        for s in State:
            if totals.get(s):
                counts.add_row(str(totals[s]), NETSTAT_NAME[s])
        # per host, its states as NAME:COUNT words: a row wraps between them, never inside one
        piles = Table(title="per-host piles", box=box.SIMPLE, title_justify="left", padding=(0, 1),
                      show_edge=False)
        piles.add_column("host", no_wrap=True)
        piles.add_column("held")
        busiest = sorted(per_host.items(), key=lambda kv: -sum(kv[1].values()))
        for h, c in busiest[:6]:
            piles.add_row(h, " ".join(f"{NETSTAT_NAME[s]}:{c[s]}" for s in State if c.get(s)))
        if len(busiest) > 6:
            piles.add_row(f"+{len(busiest) - 6} hosts", "")
        height = self.console.size.height
        room = max(2, (height - 4 - max(len(counts.rows), len(piles.rows) + 1) - 8) // 2)
        # the message column takes what the others leave (expand + ratio): they keep their natural width
        newest = Table(title="newest findings", box=box.SIMPLE, title_justify="left", padding=(0, 1),
                       show_edge=False, expand=True)
        for col in ("when", "severity", "kind", "flow"):
            newest.add_column(col, no_wrap=True)
        newest.add_column("what", no_wrap=True, overflow="ellipsis", ratio=1)
        items = [(f, a) for f, a in engine.recent if a.severity != "info"][-room:]
        for f, a in reversed(items):
            newest.add_row(text.clock(a.ts), f"[{text.SEV_STYLE[a.severity]}]{a.severity}[/]", a.kind,
                           str(f.id) if f is not None else "-", a.message)
        matter = [f for f in engine.table.current.values() if any(a.severity != "info" for a in f.anomalies)]
        matter.sort(key=lambda f: (min(SEVERITY_RANK[a.severity] for a in f.anomalies), -f.last_ts))
        fl = Table(title=f"flows that matter ({len(matter)})", box=box.SIMPLE, title_justify="left",
                   padding=(0, 1), show_edge=False, expand=True)
        for col in ("id", "client", "server", "states"):        # client / server
            fl.add_column(col, no_wrap=True)
        fl.add_column("findings", no_wrap=True, overflow="ellipsis", ratio=1)
        for f in matter[:room]:
            fl.add_row(str(f.id), f.client, f.server, f"{f.conn.client.state.value} / {f.conn.server.state.value}",
                       ", ".join(sorted({a.kind for a in f.anomalies})))
        top = Table.grid(padding=(0, 3))
        top.add_column(no_wrap=True)            # the counts keep their width; the piles wrap between words
        top.add_column()
        top.add_row(counts, piles)
        return Group(head, top, newest, fl)

    def final(self, an, rec: dict, end: int) -> None:
        if self.live is not None:
            self.live.update(self.render(self.engine))
            self.live.stop()
        d = rec["drops"]
        self.console.print()
        self.console.print(Text(f"stopped ({rec.get('stop_reason') or 'done'}): {rec['packets']} packets, "
                                f"{rec['flows_total']} connections; "
                                + ("drops unknown (" + d['source'] + ")" if d.get("dropped") is None else
                                   f"{d['dropped']} dropped of {d['received']} received by the capture "
                                   f"({d['backend']}: {d['source']})"), style="bold"))
        text.report(an, self.console, flows=getattr(an, 'kept', None))
