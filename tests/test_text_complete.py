"""Text output that is complete wherever it goes (issue 9, parts 1 and 4).

Piped to a file, every command's text must carry what its JSON carries, on every capture under captures/:
no address, port or state name cut ('…'), IPv6 included. Each check runs the command's text and JSON forms
on the same capture and looks for every JSON value in the text. A narrow `--width` wraps cells at spaces, never inside a word. The
`--port` / `--state` filters are checked against the unfiltered JSON, filtered here by hand.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcpfsm.cli import cli
from tcpfsm.fsm import NETSTAT_NAME, State

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "captures" / "kernel"
MIXED = str(KERNEL / "concurrent_mixed.pcap")       # 300 connections, findings, 2 hosts
IPV6 = str(KERNEL / "ipv6_close.pcap")
NORMAL = str(KERNEL / "normal_close_client.pcap")
BY_NAME = {s.value: s for s in State}


def _captures() -> list[Path]:
    return sorted(p for p in (ROOT / "captures").rglob("*")
                  if p.is_file() and p.name.endswith((".pcap", ".pcapng", ".pcap.gz")))


CAPTURES = _captures()


def cmd(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.stdout


def jcmd(*args: str):
    return json.loads(cmd(*args, "--format", "json"))


def words(text: str) -> set[str]:
    return set(text.split())


def ids(path: Path) -> str:
    return str(path.relative_to(ROOT / "captures"))


# -- nothing lost in a pipe: text against JSON, every capture ----------------------------------------------
@pytest.mark.parametrize("path", CAPTURES, ids=ids)
def test_piped_text_loses_nothing_the_json_has(path):
    cap = str(path)
    doc = jcmd("analyze", cap)
    table = cmd("analyze", cap, "--max-flows", "1000000")
    assert "…" not in table
    tw = words(table)
    for a in doc["anomalies"]:                                  # every finding, its whole message on one line
        assert a["kind"] in tw and a["message"] in table
    for f in doc["flows"]:
        if f["anomalies"]:                                      # "flows that matter": every one, whole
            c, s = f["client"], f["server"]
            line = next(x for x in table.splitlines() if x.split()[:1] == [str(f["id"])])
            assert _hp(c) in line.split() and _hp(s) in line.split(), line
            assert f["states"]["client"] in line and f["states"]["server"] in line

    end = doc["flows"] and max(f["last_ts"] for f in doc["flows"])
    if end:
        at = f"{end:.6f}"
        snap = jcmd("netstat", cap, "--at", at)["snapshots"][0]
        text = cmd("netstat", cap, "--at", at)
        rows = [x.split() for x in text.splitlines() if x.startswith("tcp")]
        assert len(rows) == len(snap["sockets"])
        for r, sock in zip(rows, snap["sockets"]):
            state = NETSTAT_NAME[BY_NAME[sock["state"]]]
            if "alt" in sock:                                   # undecided: both states, whole
                state += f"? (or {NETSTAT_NAME[BY_NAME[sock['alt']]]})"
            assert r[3:5] == [sock["local"], sock["remote"]] and " ".join(r[5:]) == state

    samples = jcmd("states", cap, "--interval", "1s")["samples"]
    text = cmd("states", cap, "--interval", "1s", "--by-host")
    got = Counter()
    lines = text.splitlines()
    head = lines[1].split()
    for x in lines[2:]:
        cells = x.split()
        if cells[0] != "Average:":
            for name, n in zip(head[2:], cells[2:]):
                got[(cells[0][:8], cells[1], name)] += int(n)
    want = Counter()
    for smp in samples:
        for st, n in smp["counts"].items():
            want[(_hms(smp["ts"]), smp["host"], NETSTAT_NAME[BY_NAME[st]])] += n
    assert +got == +want

    flows = jcmd("timeline", cap)["flows"]
    text = cmd("timeline", cap)
    arrows = [(m.group(1), m.group(2).rstrip("?")) for m in
              re.finditer(r"^  \d\d:\d\d:\d\d\.\d{6}\s+(?:client|server)\s+(\w+) → (\w+\??) ", text, re.M)]
    assert arrows == [(t["from"], t["to"]) for f in flows for t in f["transitions"]]


def _hp(ep: dict) -> str:
    return f"[{ep['ip']}]:{ep['port']}" if ":" in ep["ip"] else f"{ep['ip']}:{ep['port']}"


def _clock(ts: float) -> str:
    from datetime import datetime
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")


def _hms(ts: float) -> str:
    from datetime import datetime
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


# -- --width: wrap whole cells, never cut ------------------------------------------------------------------
@pytest.mark.parametrize("width", [40, 80, 120])
def test_narrow_width_wraps_cells_at_spaces_and_cuts_nothing(width):
    natural = cmd("analyze", MIXED)
    narrow = cmd("analyze", MIXED, "--width", str(width))
    assert "…" not in narrow
    # the same words, none split: every address, state and finding kind still whole
    def text_words(out):
        return Counter(w for w in out.split() if set(w) - set("─━"))      # table rules change length
    assert text_words(natural) == text_words(narrow)


def test_width_is_honoured_where_the_words_fit():
    out = cmd("analyze", MIXED, "--width", "130")      # the piles table needs 119: nine state columns
    assert max(len(x.rstrip()) for x in out.splitlines()) <= 130 < max(len(x) for x in cmd("analyze", MIXED).splitlines())


def test_ipv6_addresses_stay_whole_even_when_narrower_than_an_address():
    out = cmd("analyze", IPV6, "--width", "20")
    assert "…" not in out and "fd77:11::1" in out.split()


# -- states like sar ---------------------------------------------------------------------------------------
def test_states_sums_hosts_per_line_and_host_picks_one():
    samples = jcmd("states", MIXED, "--interval", "1s")["samples"]
    per_ts = Counter()
    for smp in samples:                          # samples where nothing is held are absent from the JSON
        per_ts[_clock(smp["ts"])] += smp["counts"].get("CLOSE_WAIT", 0)
    lines = cmd("states", MIXED, "--interval", "1s").splitlines()
    col = lines[1].split().index("CLOSE_WAIT")
    rows = {r[0]: int(r[col]) for r in (x.split() for x in lines[2:-1])}
    assert +Counter(rows) == +per_ts and max(per_ts.values()) == 150
    one = cmd("states", MIXED, "--interval", "1s", "--host", "10.77.15.2").splitlines()
    assert "on 10.77.15.2" in one[0] and len(one) == len(lines)


# -- --port and --state ------------------------------------------------------------------------------------
def test_netstat_port_matches_either_side():
    at = "+3s"
    every = jcmd("netstat", MIXED, "--at", at)["snapshots"][0]["sockets"]
    port = every[0]["local"].rpartition(":")[2]          # a client's ephemeral port: its local side
    srv = [s for s in every if s["local"].endswith(":8080")][0]["local"].rpartition(":")[2]
    for p in (port, srv):
        got = jcmd("netstat", MIXED, "--at", at, "--port", p)["snapshots"][0]["sockets"]
        want = [s for s in every if p in (s["local"].rpartition(":")[2], s["remote"].rpartition(":")[2])]
        assert got == want and got
    assert len(jcmd("netstat", MIXED, "--at", at, "--port", srv)["snapshots"][0]["sockets"]) > 2


@pytest.mark.parametrize("spelling", ["CLOSE_WAIT", "close-wait", "close_wait"])
def test_netstat_state_takes_rfc_netstat_and_ss_spellings(spelling):
    every = jcmd("netstat", MIXED, "--at", "+4.2s")["snapshots"][0]["sockets"]
    got = jcmd("netstat", MIXED, "--at", "+4.2s", "--state", spelling)["snapshots"][0]["sockets"]
    assert got == [s for s in every if s["state"] == "CLOSE_WAIT"] and got


def test_netstat_state_repeats_and_netstat_names_map_to_rfc():
    every = jcmd("netstat", MIXED, "--at", "+4.2s")["snapshots"][0]["sockets"]
    got = jcmd("netstat", MIXED, "--at", "+4.2s", "--state", "FIN_WAIT2", "--state", "ESTAB")["snapshots"][0]["sockets"]
    assert got == [s for s in every if s["state"] in ("FIN_WAIT_2", "ESTABLISHED")]
    assert {s["state"] for s in got} == {"FIN_WAIT_2", "ESTABLISHED"}


def test_states_filters_count_only_the_matching_sockets():
    every = jcmd("states", MIXED, "--interval", "500ms")["samples"]
    got = jcmd("states", MIXED, "--interval", "500ms", "--state", "SYN_RECV", "--state", "CLOSE_WAIT")["samples"]
    want = [dict(s, counts={k: v for k, v in s["counts"].items() if k in ("SYN_RECEIVED", "CLOSE_WAIT")})
            for s in every]
    assert got == [s for s in want if s["counts"]]
    text = cmd("states", MIXED, "--interval", "500ms", "--state", "close_wait").splitlines()
    assert text[1].split() == ["time", "CLOSE_WAIT"]
    none = jcmd("states", MIXED, "--interval", "500ms", "--port", "1")["samples"]
    assert none == []


def test_timeline_port_and_state_filters():
    flows = jcmd("timeline", MIXED)["flows"]
    cw = jcmd("timeline", MIXED, "--state", "CLOSE_WAIT")["flows"]
    assert [f["id"] for f in cw] == [f["id"] for f in flows
                                     if any(t["to"] == "CLOSE_WAIT" for t in f["transitions"])]
    port = flows[5]["client"]["port"]
    one = jcmd("timeline", MIXED, "--port", str(port))["flows"]
    assert [f["id"] for f in one] == [f["id"] for f in flows if port in (f["client"]["port"], f["server"]["port"])]


@pytest.mark.parametrize("args, msg", [(["netstat", MIXED, "--at", "+1s", "--state", "HALF_OPEN"], "unknown state"),
                                       (["states", MIXED, "--state", "x"], "unknown state"),
                                       (["netstat", MIXED, "--at", "+1s", "--port", "70000"], "70000"),
                                       (["timeline", MIXED, "--state", "nope"], "unknown state")])
def test_bad_filters_are_one_line_errors(args, msg, capsys):
    from tcpfsm.cli import main
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_piped_text_has_no_trailing_blanks():
    """Rich pads a table's lines to its width; in a pipe or a file that padding is dropped (issue 9 part 1:
    text people attach), and nothing else changes."""
    import subprocess
    import sys
    cap = str(ROOT / "captures" / "kernel" / "concurrent_mixed.pcap")
    exe = [sys.executable, "-c", "from tcpfsm.cli import main; main()"]
    for argv in (["analyze", cap], ["netstat", cap, "--at", "+1s"], ["states", cap], ["brief", cap]):
        p = subprocess.run(exe + argv, capture_output=True, text=True, timeout=120)
        if p.returncode == 2 and "No such command" in p.stderr:
            continue
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert len(lines) > 3
        assert [ln for ln in lines if ln != ln.rstrip(" ")] == []
