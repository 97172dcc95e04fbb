"""The path views' text is complete wherever it goes (issue 9 part 1 applied to issue 8's `segments` and
`paths`): piped, every value of their JSON is in the text, whole, on every capture under captures/ -- each
segment's packet number, flow, endpoints, flags, relative seq/ack, window, length and analysis flags (with the
duplicate ACK number); each host pair's mtr-like row."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcpfsm.cli import cli

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted(p for p in (ROOT / "captures").rglob("*")
                  if p.is_file() and p.name.endswith((".pcap", ".pcapng", ".pcap.gz")))
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{6} #(\d+) flow (\d+) (\S+) > (\S+): Flags \[([^\]]*)\], seq (\d+), ack (\d+), "
                  r"win (\d+), length (\d+)(?: \[(.*)\])?$")


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout


def _hp(ep: dict) -> str:
    return f"[{ep['ip']}]:{ep['port']}" if ":" in ep["ip"] else f"{ep['ip']}:{ep['port']}"


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(ROOT / "captures")))
def test_segments_and_paths_text_lose_nothing_the_json_has(path):
    cap = str(path)
    code, doc = run("segments", cap, "--format", "json", "-n")
    if code != 0:                                   # an error-path fixture: the text form fails the same way
        assert run("segments", cap, "-n")[0] == code
        return
    segs = json.loads(doc)["segments"]
    text = run("segments", cap, "-n")[1]
    assert "…" not in text
    lines = text.splitlines()
    assert len(lines) == len(segs)
    dup = [r["duplicate_ack_num"] for r in csv.DictReader(io.StringIO(run("segments", cap, "--format", "csv")[1]))]
    flows = {f["id"]: f for f in json.loads(run("analyze", cap, "--format", "json")[1])["flows"]} if segs else {}
    for line, s, d in zip(lines, segs, dup):
        m = LINE.match(line)
        assert m, line
        packet, flow, src, dst, flags, seq, ack, win, ln, tags = m.groups()
        assert (int(packet), int(flow), flags, int(seq), int(ack), int(win), int(ln)) == \
            (s["packet"], s["flow"], s["flags"], s["seq"], s["ack"], s["win"], s["len"])
        want = [a if a != "duplicate_ack" else f"duplicate_ack #{d}" for a in s["analysis"]]
        assert (tags.split(", ") if tags else []) == want
        f = flows.get(s["flow"])
        if f is not None:
            ends = (_hp(f["client"]), _hp(f["server"]))
            assert (src, dst) == (ends if s["endpoint"] == "client" else ends[::-1])

    pairs = json.loads(run("paths", cap, "--format", "json", "-n")[1])["paths"]
    rows = [x.split() for x in run("paths", cap, "-n")[1].splitlines()[1:-1]]
    assert len(rows) == len(pairs)
    for r, p in zip(rows, pairs):
        rtt, hs = p["rtt_ms"] or {}, p["handshake_rtt_ms"] or {}
        hp = p.get("hops") or {}
        hops = "/".join("-" if hp.get(k) is None else str(hp[k]) for k in ("client", "server"))
        assert r[:6] == [p["client"], p["server"], str(p["connections"]), hops, f"{p['loss_pct']:.1f}%",
                         str(p["sent"])]
        assert r[6:] == [f"{rtt[k]:.3f}" if rtt else "-" for k in ("last", "avg", "best", "worst", "stdev")] + \
            [f"{hs['avg']:.3f}" if hs else "-"]
