"""Self-describing live events (issue 9 part 3): every transition, anomaly and flow_end line names its
connection -- `flow`, `client` and `server` as {ip, port} -- so one line read by jq or a log shipper says
which connection moved. Checked on `analyze --follow -` and offline `--format jsonl` over the same
capture; and the dashboard still draws on an 80x24 terminal (a pseudo-terminal of that size).
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MIXED = ROOT / "captures" / "kernel" / "concurrent_mixed.pcap"
IPV6 = ROOT / "captures" / "kernel" / "ipv6_close.pcap"
TCPFSM = [sys.executable, "-m", "tcpfsm.cli"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def events(args, stdin=None):
    p = subprocess.run(TCPFSM + args, stdin=stdin, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    return [json.loads(x) for x in p.stdout.splitlines()]


@pytest.mark.parametrize("cap", [MIXED, IPV6], ids=["v4", "v6"])
@pytest.mark.parametrize("mode", ["follow", "offline"])
def test_every_per_flow_event_names_its_connection(cap, mode):
    if mode == "follow":
        with open(cap, "rb") as fh:
            evs = events(["analyze", "--follow", "-"], stdin=fh)
    else:
        evs = events(["analyze", str(cap), "--format", "jsonl"])
    ends = {e["id"]: e for e in evs if e["event"] == "flow_end"}
    per_flow = [e for e in evs if e["event"] in ("transition", "flow_end")
                or (e["event"] == "anomaly" and e["flow"] is not None)]
    assert {e["event"] for e in per_flow} >= {"transition", "flow_end"} and ends
    for e in per_flow:
        end = ends[e["flow"]]                        # the same names as the flow's own record
        assert set(e["client"]) == set(e["server"]) == {"ip", "port"}
        assert (e["client"], e["server"]) == (end["client"], end["server"]), e
        assert e["flow"] == end["id"]
    if cap == MIXED:
        assert any(e["event"] == "anomaly" and e["flow"] is not None for e in per_flow)


def test_a_transition_line_alone_is_enough_for_jq():
    """`jq 'select(.to=="CLOSE_WAIT") | .server.ip'` works on the live stream, line by line."""
    with open(MIXED, "rb") as fh:
        evs = events(["analyze", "--follow", "-"], stdin=fh)
    cw = [e for e in evs if e["event"] == "transition" and e["to"] == "CLOSE_WAIT"]
    assert len(cw) == 150 and {e["server"]["port"] for e in cw} == {8080}
    assert {e["client"]["ip"] for e in cw} == {"10.77.15.1"}


def test_dashboard_fits_80x24():
    """The dashboard on an 80x24 terminal: every frame line within 80 columns, addresses whole, the
    counts, piles and flows all drawn, and the run ends with the full report."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(ENV, TERM="xterm", COLUMNS="80", LINES="24")
    with open(MIXED, "rb") as fh:
        p = subprocess.Popen(TCPFSM + ["analyze", "--follow", "-"], stdin=fh, stdout=slave,
                             stderr=subprocess.PIPE, env=env, cwd=ROOT)
    os.close(slave)
    out = b""
    deadline = time.time() + 90
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:                     # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=30)
    os.close(master)
    assert p.returncode == 0, p.stderr.read()
    screen = out.decode("utf-8", "replace").replace("\r", "")
    screen = re.sub(r"\x1b\[[0-9;?]*[AK]", "\n", screen)      # a redraw moves up and erases: a line break
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen)
    frame, _, final = screen.partition("stopped (")
    lines = [x for x in frame.splitlines() if x.strip()]
    assert lines and max(len(x) for x in lines) <= 80
    last = lines[-22:]                         # the last frame drawn: within the 24 rows
    text = "\n".join(last)
    for want in ("per-host piles", "newest findings", "flows that matter", "10.77.15.1:", "10.77.15.2:8080",
                 "CLOSE_WAIT:50"):
        assert want in text, want
    assert "10.77.…" not in text
    assert "Findings (most severe first)" in final
