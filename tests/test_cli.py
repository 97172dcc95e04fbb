"""The command line, run as a user runs it: `python -m tcpfsm.cli ...` in a subprocess.

Checks the output contracts of DESIGN.md (Outputs) key by key, the time syntaxes of `--at`, and that every
error a user can make ends with exit 2 and one `tcpfsm: error:` line, never a traceback.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "captures" / "kernel"
CRAFTED = ROOT / "captures" / "crafted"
LINKS = ROOT / "captures" / "links"
NORMAL = str(KERNEL / "normal_close_client.pcap")
LAST_ACK = str(KERNEL / "last_ack.pcap")            # findings: last_ack_unacked, lingering_fin_wait_2
HALF_CLOSE = str(KERNEL / "half_close.pcap")        # server CLOSE_WAIT for 4.2 s
TW_ENTERED = 1795468755.682872                      # normal_close_client: client FIN_WAIT_2 -> TIME_WAIT

STATE_NAMES = {"LISTEN", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT",
               "CLOSING", "LAST_ACK", "TIME_WAIT", "CLOSED"}
FLOW_KEYS = {"id", "client", "server", "role_inferred", "first_ts", "last_ts", "packets", "bytes", "states",
             "conn_state", "history", "transitions", "anomalies", "path"}     # path: issue 8 (path health)


def run_module(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """`python -m tcpfsm.cli ARGS` in a fresh interpreter, exactly as a user runs it (~0.6 s of imports)."""
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(ROOT))
    env.pop("TCPFSM_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "tcpfsm.cli", *args], input=stdin, capture_output=True,
                          cwd=ROOT, env=env, timeout=60)


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """The same `main()` that `python -m tcpfsm.cli` calls, in a forked child process with its own fds 0/1/2
    and exit status, so each call is isolated without paying the interpreter start-up again.
    `test_module_entry_point_gives_the_same_output_as_run` keeps the two ways honest."""
    from tcpfsm.cli import main
    with tempfile.TemporaryDirectory() as d:
        fin, fout, ferr = (os.path.join(d, n) for n in ("stdin", "stdout", "stderr"))
        Path(fin).write_bytes(stdin or b"")
        pid = os.fork()
        if pid == 0:                                   # child: never returns into pytest
            code = 1
            try:
                for fd, path, flags in ((0, fin, os.O_RDONLY), (1, fout, os.O_WRONLY | os.O_CREAT),
                                        (2, ferr, os.O_WRONLY | os.O_CREAT)):
                    f = os.open(path, flags, 0o600)
                    os.dup2(f, fd)
                    os.close(f)
                sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
                sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                              write_through=True)
                sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                              write_through=True)
                os.environ["COLUMNS"] = "200"
                os.environ.pop("TCPFSM_DEBUG", None)
                os.chdir(ROOT)
                try:
                    main(list(args))
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except Exception:
                        pass
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return subprocess.CompletedProcess(args, os.waitstatus_to_exitcode(status), Path(fout).read_bytes(),
                                           Path(ferr).read_bytes())


@lru_cache(maxsize=None)
def run_cached(*args: str) -> subprocess.CompletedProcess:
    return run(*args)


def ok_json(*args: str):
    p = run_cached(*args)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def assert_exit_2_without_traceback(p: subprocess.CompletedProcess, pattern: str) -> None:
    err = p.stderr.decode()
    assert p.returncode == 2 and "Traceback" not in err, (p.returncode, err)
    assert re.search(r"^tcpfsm: error: .*" + pattern, err, re.M), err


def assert_user_error(p: subprocess.CompletedProcess, pattern: str = "") -> str:
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tcpfsm: error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# -- analyze --format json ------------------------------------------------------------------------------

def test_analyze_json_top_level_keys_are_exactly_the_contract():
    assert set(ok_json("analyze", NORMAL, "--format", "json")) == {"capture", "profile", "flows", "anomalies",
                                                                    "summary"}


def test_analyze_json_flow_has_exactly_the_contract_keys():
    (flow,) = ok_json("analyze", NORMAL, "--format", "json")["flows"]
    assert set(flow) == FLOW_KEYS
    assert flow["client"] == {"ip": "10.77.1.1", "port": 51700}
    assert flow["server"] == {"ip": "10.77.1.2", "port": 8080}
    assert flow["packets"] == {"client": 6, "server": 5}
    assert flow["bytes"] == {"client": 200, "server": 300}
    assert flow["states"] == {"client": "TIME_WAIT", "server": "CLOSED"}
    assert flow["role_inferred"] is False
    assert flow["conn_state"] == "SF"
    assert flow["first_ts"] <= flow["last_ts"]


def test_analyze_json_transitions_have_exactly_ts_endpoint_from_to_packet_cause():
    (flow,) = ok_json("analyze", NORMAL, "--format", "json")["flows"]
    assert len(flow["transitions"]) == 10
    for t in flow["transitions"]:
        assert set(t) == {"ts", "endpoint", "from", "to", "packet", "cause"}
        assert t["endpoint"] in ("client", "server")
        assert {t["from"], t["to"]} <= STATE_NAMES
    assert [(t["endpoint"], t["from"], t["to"]) for t in flow["transitions"][-2:]] == [
        ("client", "FIN_WAIT_2", "TIME_WAIT"), ("server", "LAST_ACK", "CLOSED")]
    assert flow["transitions"][-1]["ts"] == TW_ENTERED


def test_analyze_json_anomalies_have_exactly_the_contract_keys():
    doc = ok_json("analyze", LAST_ACK, "--format", "json")
    (flow,) = doc["flows"]
    assert {a["kind"] for a in flow["anomalies"]} == {"last_ack_unacked", "lingering_fin_wait_2"}
    for a in flow["anomalies"]:
        assert set(a) == {"kind", "severity", "ts", "endpoint", "message"}
    assert doc["anomalies"], "per-flow findings are also listed at the top level"
    for a in doc["anomalies"]:
        assert set(a) == {"kind", "severity", "ts_start", "ts_end", "count", "flows", "message"}
        assert a["flows"] == [1] and a["ts_start"] <= a["ts_end"]


def test_analyze_json_state_names_are_rfc_upper_snake_case():
    doc = ok_json("analyze", str(KERNEL / "concurrent_mixed.pcap"), "--format", "json")
    seen = set()
    for f in doc["flows"]:
        seen |= set(f["states"].values())
        seen |= {t["from"] for t in f["transitions"]} | {t["to"] for t in f["transitions"]}
    assert seen <= STATE_NAMES
    assert len(seen) >= 6


def test_analyze_threshold_override_raises_a_finding():
    base = ok_json("analyze", HALF_CLOSE, "--format", "json")
    assert not any(a["kind"] == "stuck_close_wait" for a in base["flows"][0]["anomalies"])
    low = ok_json("analyze", HALF_CLOSE, "--format", "json", "--threshold", "stuck_close_wait=3")
    (a,) = [a for a in low["flows"][0]["anomalies"] if a["kind"] == "stuck_close_wait"]
    assert a["endpoint"] == "server" and a["severity"] == "high"


def test_analyze_unknown_threshold_is_a_user_error():
    assert_user_error(run("analyze", NORMAL, "--threshold", "nosuch=1"), "nosuch")


def test_analyze_threshold_without_a_number_is_a_user_error():
    assert_user_error(run("analyze", NORMAL, "--threshold", "stuck_close_wait=soon"), "stuck_close_wait")


# -- other analyze formats -------------------------------------------------------------------------------------

def test_analyze_output_option_writes_the_file_and_nothing_to_stdout(tmp_path):
    out = tmp_path / "a.json"
    p = run("analyze", NORMAL, "--format", "json", "-o", str(out))
    assert p.returncode == 0 and p.stdout == b""
    assert json.loads(out.read_text())["flows"][0]["id"] == 1


def test_analyze_output_to_an_unwritable_path_is_a_user_error(tmp_path):
    assert_user_error(run("analyze", NORMAL, "--format", "csv", "-o", str(tmp_path / "no" / "x.csv")), "cannot write")


def test_analyze_jsonl_is_one_event_per_line_ending_with_stats():
    p = run_cached("analyze", LAST_ACK, "--format", "jsonl")
    assert p.returncode == 0
    events = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert all(e["event"] in {"transition", "anomaly", "flow_end", "stats"} and "ts" in e for e in events)
    assert events[-1]["event"] == "stats"
    assert [e["event"] for e in events].count("stats") == 1
    assert [e["event"] for e in events].count("flow_end") == 1
    assert [e["event"] for e in events].count("transition") == 8
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)


def test_analyze_csv_has_one_row_per_flow():
    p = run_cached("analyze", str(CRAFTED / "tw_reuse.pcap"), "--format", "csv")
    assert p.returncode == 0
    rows = list(csv.DictReader(io.StringIO(p.stdout.decode())))
    assert [r["id"] for r in rows] == ["1", "2"]
    assert rows[1]["anomalies"] == "time_wait_reuse"
    assert {r["state_client"] for r in rows} | {r["state_server"] for r in rows} <= STATE_NAMES


def test_analyze_table_reports_findings_and_skipped_counts():
    p = run_cached("analyze", LAST_ACK)
    out = p.stdout.decode()
    assert p.returncode == 0
    assert "last_ack_unacked" in out and "lingering_fin_wait_2" in out
    assert re.search(r"skipped\s+4 \(arp 4\)", out), out


# -- netstat --------------------------------------------------------------------------------------------------

def test_netstat_json_gives_one_snapshot_per_at_in_the_given_order():
    doc = ok_json("netstat", NORMAL, "--at", "+1s", "--at", "+0.5s", "--format", "json")
    assert set(doc) == {"snapshots"}
    snaps = doc["snapshots"]
    assert len(snaps) == 2
    assert [set(s) for s in snaps] == [{"at", "sockets"}] * 2
    assert snaps[0]["at"] == pytest.approx(snaps[1]["at"] + 0.5)
    for s in snaps:
        for sock in s["sockets"]:
            assert set(sock) == {"host", "local", "remote", "state", "flow"}
            assert sock["state"] in STATE_NAMES
    assert sorted(x["state"] for x in snaps[0]["sockets"]) == ["ESTABLISHED", "ESTABLISHED", "LISTEN"]


@pytest.mark.parametrize("at", ["1795468756.69554", "2026-11-23T21:19:16.695540Z", "+3.070619s", "+3070.619ms"])
def test_netstat_at_accepts_epoch_iso_and_offsets(at):
    # all four name the kernel truth's "client TIME-WAIT" snapshot (capture start 1795468753.624921)
    (snap,) = ok_json("netstat", NORMAL, "--at", at, "--format", "json")["snapshots"]
    assert snap["at"] == pytest.approx(1795468756.69554, abs=2e-6)
    assert [(s["host"], s["state"]) for s in snap["sockets"]] == [("10.77.1.1", "TIME_WAIT")]


def test_netstat_bad_at_is_one_line_exit_2():
    assert_user_error(run_module("netstat", NORMAL, "--at", "abc"), "bad time 'abc'")


def test_netstat_at_inf_is_a_user_error():
    assert_exit_2_without_traceback(run("netstat", NORMAL, "--at", "inf"), "bad time")


def test_netstat_without_at_is_a_user_error():
    assert_user_error(run("netstat", NORMAL), "--at")


def test_netstat_ipv6_addresses_are_bracketed():
    doc = ok_json("netstat", str(CRAFTED / "ipv6_normal.pcap"), "--at", "+0.03s", "--format", "json")
    rows = {(s["local"], s["remote"], s["state"]) for s in doc["snapshots"][0]["sockets"]}
    assert ("[2001:db8::1]:45000", "[2001:db8::2]:80", "ESTABLISHED") in rows
    assert ("[2001:db8::2]:80", "[2001:db8::1]:45000", "ESTABLISHED") in rows


def test_netstat_host_filter_lists_only_that_host():
    doc = ok_json("netstat", NORMAL, "--at", "+1.8s", "--host", "10.77.1.2", "--format", "json")
    socks = doc["snapshots"][0]["sockets"]
    assert {s["host"] for s in socks} == {"10.77.1.2"}
    assert sorted(s["state"] for s in socks) == ["CLOSE_WAIT", "LISTEN"]


def test_netstat_text_has_netstat_header_and_spellings():
    p = run_cached("netstat", NORMAL, "--at", "+1.8s", "--at", "1795468756.69554")
    out = p.stdout.decode()
    assert p.returncode == 0
    assert re.search(r"Proto Recv-Q Send-Q Local Address\s+Foreign Address\s+State", out)
    assert re.search(r"^tcp\s+0\s+0\s+10\.77\.1\.1:51700\s+10\.77\.1\.2:8080\s+FIN_WAIT2$", out, re.M)
    assert re.search(r"^tcp\s+0\s+0\s+10\.77\.1\.1:51700\s+10\.77\.1\.2:8080\s+TIME_WAIT$", out, re.M)
    assert "FIN_WAIT_2" not in out


def test_netstat_text_states_equal_kernel_truth_snapshot():
    truth = json.loads((KERNEL / "normal_close_client.truth.json").read_text())
    snap = next(s for s in truth["snapshots"] if s["label"] == "client FIN-WAIT-2, server CLOSE-WAIT")
    ss_to_netstat = {"ESTAB": "ESTABLISHED", "FIN-WAIT-2": "FIN_WAIT2", "CLOSE-WAIT": "CLOSE_WAIT",
                     "LISTEN": "LISTEN", "TIME-WAIT": "TIME_WAIT"}
    want = {(s["local"], s["remote"], ss_to_netstat[s["state"]]) for s in snap["sockets"]}
    want = {(loc, "0.0.0.0:*" if rem == "0.0.0.0:*" else rem, st) for loc, rem, st in want}
    p = run("netstat", NORMAL, "--at", repr(snap["t"]))
    got = {tuple(line.split()[3:6]) for line in p.stdout.decode().splitlines() if line.startswith("tcp")}
    assert got == want


def test_netstat_syn_recv_spelling_in_text():
    out = run("netstat", str(CRAFTED / "syn_flood_spoofed.pcap"), "--at", "+5s", "--host", "10.0.0.80").stdout
    assert b"SYN_RECV" in out and b"SYN_RECEIVED" not in out


def test_timer_override_ends_time_wait_31s_after_entry():
    at = repr(round(TW_ENTERED + 31, 6))
    short = ok_json("netstat", NORMAL, "--at", at, "--host", "10.77.1.1", "--timer", "time_wait=30",
                    "--format", "json")
    default = ok_json("netstat", NORMAL, "--at", at, "--host", "10.77.1.1", "--format", "json")
    assert short["snapshots"][0]["sockets"] == []
    assert [s["state"] for s in default["snapshots"][0]["sockets"]] == ["TIME_WAIT"]


def test_unknown_timer_is_a_user_error():
    assert_user_error(run("netstat", NORMAL, "--at", "+1s", "--timer", "nosuch=3"), "unknown timer")


def test_unknown_profile_is_a_user_error():
    assert_user_error(run("analyze", NORMAL, "--profile", "nosuch"), "nosuch")


def test_windows_profile_keeps_time_wait_at_capture_end():
    doc = ok_json("analyze", str(CRAFTED / "windows_tw.pcap"), "--profile", "windows", "--format", "json")
    assert doc["profile"]["name"] == "windows" and doc["profile"]["time_wait"] == 240.0
    assert doc["flows"][0]["states"]["client"] == "TIME_WAIT"


# -- states ---------------------------------------------------------------------------------------------------

def test_states_csv_has_a_row_per_sample_and_host():
    p = run("states", NORMAL, "--interval", "1s", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(p.stdout.decode())))
    assert p.returncode == 0
    assert [(r["host"], r["ESTABLISHED"], r["FIN_WAIT_2"], r["CLOSE_WAIT"]) for r in rows] == [
        ("10.77.1.1", "1", "0", "0"), ("10.77.1.2", "1", "0", "0"),
        ("10.77.1.1", "0", "1", "0"), ("10.77.1.2", "0", "0", "1")]


def test_states_json_samples_are_spaced_by_the_interval():
    doc = ok_json("states", NORMAL, "--interval", "500ms", "--format", "json")
    assert doc["interval"] == 0.5
    ts = sorted({s["ts"] for s in doc["samples"]})
    assert all(b - a == pytest.approx(0.5) for a, b in zip(ts, ts[1:]))
    assert all(set(s) == {"ts", "host", "counts"} and set(s["counts"]) <= STATE_NAMES for s in doc["samples"])


def test_states_table_reads_like_sar_with_one_line_per_sample():
    p = run("states", NORMAL, "--interval", "1s", "--format", "table")
    lines = p.stdout.decode().splitlines()
    samples = ok_json("states", NORMAL, "--interval", "1s", "--format", "json")["samples"]
    assert p.returncode == 0
    assert lines[1].split()[:4] == ["time", "SYN_SENT", "SYN_RECV", "ESTABLISHED"]     # netstat's spellings
    assert lines[-1].startswith("Average:")
    times = [x.split()[0] for x in lines[2:-1]]                 # every sample, also those where nothing is held
    secs = [int(t[:2]) * 3600 + int(t[3:5]) * 60 + float(t[6:]) for t in times]
    assert len(times) >= len({s["ts"] for s in samples}) and all(b - a == pytest.approx(1) for a, b in zip(secs, secs[1:]))


@pytest.mark.parametrize("interval", ["0", "x", "-1s", "0ms"])
def test_states_bad_interval_is_a_user_error(interval):
    assert_user_error(run("states", NORMAL, f"--interval={interval}"), "bad interval")


# -- timeline -------------------------------------------------------------------------------------------------

def test_timeline_text_lists_every_transition_of_the_flow():
    p = run("timeline", NORMAL, "--flow", "1", "--format", "text")
    out = p.stdout.decode()
    assert p.returncode == 0
    assert len(re.findall(r"→", out)) >= 10
    assert re.search(r"FIN_WAIT_2 → TIME_WAIT", out) and re.search(r"LAST_ACK → CLOSED", out)


def test_timeline_json_adds_reason_and_rfc_edge():
    doc = ok_json("timeline", NORMAL, "--flow", "1", "--format", "json")
    (flow,) = doc["flows"]
    assert flow["id"] == 1 and len(flow["transitions"]) == 10
    for t in flow["transitions"]:
        assert set(t) == {"ts", "endpoint", "from", "to", "packet", "cause", "reason", "rfc_edge", "at"}
        assert t["at"] <= t["ts"] + 0.01          # the endpoint changed state by the time its packet was seen, give or take the tap-to-endpoint delay
        assert t["reason"] and t["rfc_edge"] is True


def test_timeline_markdown_is_a_table():
    out = run("timeline", NORMAL, "--flow", "1", "--format", "md").stdout.decode()
    assert "| time | endpoint | transition |" in out
    assert out.count("\n|") >= 12


def test_timeline_host_and_port_select_flows():
    doc = ok_json("timeline", str(CRAFTED / "tw_reuse.pcap"), "--host", "10.0.0.1", "--port", "44000",
                  "--format", "json")
    assert [f["id"] for f in doc["flows"]] == [1, 2]
    none = ok_json("timeline", str(CRAFTED / "tw_reuse.pcap"), "--host", "10.0.0.1", "--port", "80",
                   "--format", "json")
    assert none["flows"] == []


def test_timeline_unknown_flow_is_a_user_error():
    assert_user_error(run("timeline", NORMAL, "--flow", "999"), "no flow 999")


def test_timeline_port_without_host_matches_either_side():
    flows = ok_json("timeline", NORMAL, "--format", "json")["flows"]
    srv = str(flows[0]["server"]["port"])
    assert ok_json("timeline", NORMAL, "--port", srv, "--format", "json")["flows"] == flows
    assert ok_json("timeline", NORMAL, "--port", "1", "--format", "json")["flows"] == []


# -- inputs and errors ---------------------------------------------------------------------------------------

def test_module_entry_point_gives_the_same_output_as_run():
    via_module = run_module("analyze", NORMAL, "--format", "json")
    assert via_module.returncode == 0 and via_module.stderr == b""
    assert via_module.stdout == run_cached("analyze", NORMAL, "--format", "json").stdout


def test_module_entry_point_missing_file_is_one_line_exit_2():
    assert_user_error(run_module("analyze", str(ROOT / "no_such.pcap")), "no such file")


def test_missing_file_is_one_line_exit_2():
    assert_user_error(run("analyze", str(ROOT / "no_such.pcap")), "no such file")


def test_directory_is_one_line_exit_2(tmp_path):
    # a directory is read as the captures in it (issue 11: tests/test_multi_files.py); one without any is refused
    (tmp_path / "notes.txt").write_text("not a capture\n")
    assert_user_error(run("analyze", str(tmp_path)), "directory")


def test_non_capture_file_is_one_line_exit_2():
    assert_user_error(run("analyze", "/etc/hostname"), "not a pcap")


def test_empty_file_is_one_line_exit_2(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert_user_error(run("analyze", str(empty)), "empty")


def test_truncated_capture_is_analysed_with_a_warning():
    p = run_module("analyze", str(LINKS / "truncated.pcap"), "--format", "json")
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert [line for line in err.splitlines()] and all(line.startswith("tcpfsm: warning: ")
                                                       for line in err.splitlines())
    assert "Traceback" not in err
    assert json.loads(p.stdout)["capture"]["truncated"] is True


def test_stdin_dash_reads_the_capture_from_a_pipe():
    with open(NORMAL, "rb") as fh:                   # a real pipe/file on fd 0 of a fresh interpreter
        p = subprocess.run([sys.executable, "-m", "tcpfsm.cli", "analyze", "-", "--format", "json"], stdin=fh,
                           capture_output=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    doc = json.loads(p.stdout)
    assert doc["capture"]["path"] == "-"
    assert doc["flows"][0]["states"] == {"client": "TIME_WAIT", "server": "CLOSED"}


def test_gzip_capture_reads_like_the_plain_one():
    gz = ok_json("analyze", str(LINKS / "eth.pcap.gz"), "--format", "json")
    plain = ok_json("analyze", str(LINKS / "eth.pcap"), "--format", "json")
    assert gz["capture"]["compressed"] and not plain["capture"]["compressed"]
    assert [f["states"] for f in gz["flows"]] == [f["states"] for f in plain["flows"]]


# -- graph ----------------------------------------------------------------------------------------------------

def test_graph_json_is_node_link_data_with_11_states():
    doc = ok_json("graph", "--format", "json")
    assert {n["id"] for n in doc["nodes"]} == STATE_NAMES
    edges = {(e["source"], e["target"]): e["rfc"] for e in doc["edges"]}
    assert edges[("FIN_WAIT_2", "TIME_WAIT")] is True
    assert edges[("CLOSED", "ESTABLISHED")] is False


def test_graph_dot_dashes_non_rfc_edges():
    out = run("graph", "--format", "dot").stdout.decode()
    assert out.startswith("digraph tcp {") and out.rstrip().endswith("}")
    assert '"CLOSED" -> "ESTABLISHED" [style=dashed];' in out
    assert '"FIN_WAIT_2" -> "TIME_WAIT";' in out


def test_graph_graphml_parses_back_with_networkx():
    import networkx as nx
    g = nx.parse_graphml(run("graph", "--format", "graphml").stdout.decode())
    assert set(g.nodes) == STATE_NAMES
    assert g.edges["CLOSED", "SYN_SENT"]["rfc"] is True


@pytest.mark.parametrize("opt", ["--timer", "--threshold"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e400"])
def test_timer_and_threshold_values_must_be_finite_non_negative_numbers(opt, value):
    """NaN or infinity would reach the JSON as tokens that are not JSON; a negative duration means nothing."""
    name = "time_wait" if opt == "--timer" else "stuck_close_wait"
    p = run("analyze", NORMAL, "--format", "json", opt, f"{name}={value}")
    assert_exit_2_without_traceback(p, "must be a finite number")
    assert p.stdout == b""


def test_live_duration_nan_is_a_usage_error():
    p = run("live", "-i", "lo", "--duration", "nan")
    assert p.returncode == 2 and b"Traceback" not in p.stderr and b"positive number" in p.stderr
