"""Output that is never lost, and never changes: the orjson writers against the stdlib-json reference they
replaced, on every capture; every write checked (disk full, short writes, a reader that leaves).

The reference serialisers below are the pre-orjson code, kept verbatim: the documents they produce are
the "before" each test compares with (parsed, key by key and value by value).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings, strategies as st

import tcpfsm
from tcpfsm.capture.batch import CaptureError
from tcpfsm.detect.zeek import conn_state
from tcpfsm.path.flows import path_record
from tcpfsm.render import output, records

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted(p for p in (ROOT / "captures").rglob("*")
                  if p.is_file() and p.name.endswith((".pcap", ".pcapng", ".pcap.gz")))
MIXED = str(ROOT / "captures" / "kernel" / "concurrent_mixed.pcap")     # 300 connections, ~0.3 MB of jsonl
NS = 1_000_000_000


# -- the reference: the stdlib-json serialisers as they were --------------------------------------
def ref_sec(ns):
    return None if ns is None else round(ns / NS, 6)


def ref_transition(t):
    rec = {"ts": ref_sec(t.ts), "endpoint": t.endpoint, "from": t.old.value, "to": t.new.value,
           "packet": t.packet, "cause": t.cause}
    if t.alt is not None:                       # only where the packets cannot decide (issue 13's contract)
        rec["alt"] = t.alt.value
    if t.retracted:
        rec["retracted"] = True
    return rec


def ref_states(f):
    conn = f.conn
    rec = {"client": conn.client.state.value, "server": conn.server.state.value}
    alt = {role: conn.alt_of(ep).value for role, ep in (("client", conn.client), ("server", conn.server))
           if conn.alt_of(ep) is not None}
    if alt:
        rec["alt"] = alt
    return rec


def ref_flow_anomaly(a):
    return {"kind": a.kind, "severity": a.severity, "ts": ref_sec(a.ts), "endpoint": a.endpoint,
            "message": a.message}


def ref_aggregate(a):
    return {"kind": a.kind, "severity": a.severity, "ts_start": ref_sec(a.ts), "ts_end": ref_sec(a.ts_end or a.ts),
            "count": a.count, "flows": list(a.flows), "message": a.message}


def ref_flow(f):
    c, s = f.conn.client, f.conn.server
    return {
        "id": f.id, "client": {"ip": f.client_ip, "port": f.client_port},
        "server": {"ip": f.server_ip, "port": f.server_port}, "role_inferred": f.role_inferred,
        "first_ts": ref_sec(f.first_ts), "last_ts": ref_sec(f.last_ts),
        "packets": {"client": c.packets, "server": s.packets}, "bytes": {"client": c.payload, "server": s.payload},
        "states": ref_states(f),
        "conn_state": f.zeek[0] if f.zeek else conn_state(f), "history": f.zeek[1] if f.zeek else f.conn.history,
        "transitions": [ref_transition(t) for t in f.transitions],
        "anomalies": [ref_flow_anomaly(a) for a in f.anomalies],
        **({} if path_record(f) is None else {"path": path_record(f)}),    # path health (tcpfsm.path), as built
    }


def ref_analysis_json(an) -> str:
    return json.dumps({"capture": records.capture_record(an), "profile": records.profile_record(an),
                       "flows": [ref_flow(f) for f in an.flows],
                       "anomalies": [ref_aggregate(a) for a in an.findings], "summary": an.summary()},
                      ensure_ascii=False)


def ref_event_lines(an) -> list[str]:
    events = []
    for f in an.flows:
        # every per-flow event names its connection (issue 9 part 3): flow id, client and server
        names = {"flow": f.id, "client": {"ip": f.client_ip, "port": f.client_port},
                 "server": {"ip": f.server_ip, "port": f.server_port}}
        for t in f.transitions:
            events.append((t.ts, 0, {"event": "transition", "ts": ref_sec(t.ts), **names,
                                     **{k: v for k, v in ref_transition(t).items() if k != "ts"}}))
        for a in f.anomalies:
            events.append((a.ts, 1, {"event": "anomaly", "ts": ref_sec(a.ts), **names,
                                     **{k: v for k, v in ref_flow_anomaly(a).items() if k != "ts"}}))
        events.append((f.last_ts, 2, {"event": "flow_end", "ts": ref_sec(f.last_ts), "flow": f.id, **ref_flow(f)}))
    for a in an.findings:
        events.append((a.ts_end or a.ts, 1, {"event": "anomaly", "ts": ref_sec(a.ts_end or a.ts), "flow": None,
                                             **ref_aggregate(a)}))
    events.sort(key=lambda e: (e[0], e[1]))
    out = [e[2] for e in events]
    out.append({"event": "stats", "ts": ref_sec(an.end), "capture": records.capture_record(an),
                "profile": an.profile.name, "summary": an.summary()})
    return [json.dumps(e) for e in out]


def ref_snapshots(snaps) -> str:
    return json.dumps({"snapshots": [{"at": ref_sec(s.at), "sockets": [
        {"host": r.host, "local": r.local, "remote": r.remote, "state": r.state.value, "flow": r.flow,
         **({"alt": r.alt.value} if r.alt is not None else {})}
        for r in s.sockets]} for s in snaps]}, indent=2, ensure_ascii=False)


def _analyze(path):
    try:
        return tcpfsm.analyze(str(path))
    except CaptureError:
        pytest.skip("not a readable capture (an error-path fixture)")


# -- same document, every capture -------------------------------------------------------------------
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(ROOT / "captures")))
def test_json_jsonl_and_netstat_parse_equal_to_the_stdlib_reference(path):
    an = _analyze(path)
    buf = io.BytesIO()
    records.write_analysis_json(an, buf)
    assert json.loads(buf.getvalue()) == json.loads(ref_analysis_json(an))

    buf = io.BytesIO()
    records.write_event_stream(an, buf)
    lines = buf.getvalue().decode().splitlines()
    ref = ref_event_lines(an)
    assert len(lines) == len(ref)
    for got, want in zip(lines, ref):
        assert json.loads(got) == json.loads(want)
    assert [json.loads(x) for x in ref] == records.event_stream(an)        # the list API agrees too

    if an.flows:
        mid = (an.start + an.end) // 2
        snaps = an.netstat_many([an.start, mid, an.end])
        assert json.loads(records.dumps(records.snapshot_records(snaps))) == json.loads(ref_snapshots(snaps))


@pytest.mark.parametrize("path", CAPTURES[::7], ids=lambda p: p.name)
def test_timestamps_print_exactly_as_python_json_printed_them(path):
    """Not only equal once parsed: every ts/first_ts/last_ts is the same text as json.dumps wrote."""
    an = _analyze(path)
    stamps = [an.start, an.end] + [t.ts for f in an.flows for t in f.transitions] + \
        [x for f in an.flows for x in (f.first_ts, f.last_ts)] + [a.ts for a in an.findings]
    for ns in stamps:
        assert orjson.dumps(records.sec(ns)) == json.dumps(ref_sec(ns)).encode()


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.integers(0, 4_000_000_000 * NS), st.integers(0, 4_000_000_000 * 10**6).map(lambda u: u * 1000),
                 st.integers(-10**18, 10**21)))
def test_sec_is_round_to_the_microsecond(ns):
    """Same double; same text wherever Python prints positional digits (1e-4 <= |x| < 1e16: every epoch
    time). Below that only the exponent's spelling differs (1e-06 vs 1e-6), the same number once parsed."""
    got, want = records.sec(ns), ref_sec(ns)
    assert got == want
    assert json.loads(orjson.dumps(got)) == want
    if want == 0 or 1e-4 <= abs(want) < 1e16:
        assert orjson.dumps(got) == json.dumps(want).encode()


# -- the byte sink: bounded chunks, short writes completed, failures reported -----------------------
class FakeWrites:
    """os.write that takes at most `cap` bytes per call (as Linux does at 0x7ffff000), then maybe fails."""

    def __init__(self, cap: int, fail_after: int | None = None, zero: bool = False):
        self.cap, self.fail_after, self.zero = cap, fail_after, zero
        self.data = bytearray()
        self.calls: list[int] = []

    def __call__(self, fd, view):
        if self.zero:
            return 0
        if self.fail_after is not None and len(self.data) >= self.fail_after:
            raise OSError(28, "No space left on device")
        n = min(len(view), self.cap)
        self.data += bytes(view[:n])
        self.calls.append(len(view))
        return n


def test_short_writes_are_completed_in_order(tmp_path, monkeypatch):
    fake = FakeWrites(cap=1000)
    monkeypatch.setattr(output.os, "write", fake)
    pieces = [bytes([i % 251]) * (i * 37 % 5000 + 1) for i in range(500)]
    with output.Output(str(tmp_path / "o")) as out:
        for p in pieces:
            out.write(p)
    assert bytes(fake.data) == b"".join(pieces)


def test_chunks_are_bounded_and_the_buffer_is_reused(tmp_path, monkeypatch):
    fake = FakeWrites(cap=1 << 40)
    monkeypatch.setattr(output.os, "write", fake)
    monkeypatch.setattr(output, "CHUNK", 4096)
    an = tcpfsm.analyze(MIXED)
    with output.Output(str(tmp_path / "o")) as out:
        records.write_event_stream(an, out)
    assert len(fake.calls) > 20 and max(fake.calls) < 4096 + 64 * 1024     # a chunk plus at most one event
    buf = io.BytesIO()
    records.write_event_stream(an, buf)
    assert bytes(fake.data) == buf.getvalue()


def test_a_write_that_makes_no_progress_is_an_error_not_a_loop(tmp_path, monkeypatch):
    monkeypatch.setattr(output.os, "write", FakeWrites(cap=1, zero=True))
    with pytest.raises(output.OutputError, match="short write"):
        with output.Output(str(tmp_path / "o")) as out:
            out.write(b"x" * 10)


def test_disk_full_midway_is_an_output_error(tmp_path, monkeypatch):
    monkeypatch.setattr(output.os, "write", FakeWrites(cap=10_000, fail_after=50_000))
    monkeypatch.setattr(output, "CHUNK", 8192)
    with pytest.raises(output.OutputError, match=r"cannot write .*: No space left on device"):
        with output.Output(str(tmp_path / "o")) as out:
            for _ in range(100):
                out.write(b"y" * 1000)


# -- the command line, as a user runs it -------------------------------------------------------------
def tcpfsm_cmd(*args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TCPFSM_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "tcpfsm.cli", *args], cwd=ROOT, env=env, timeout=120, **kw)


def assert_one_error_line(p, pattern: str) -> None:
    err = p.stderr.decode()
    assert p.returncode != 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("tcpfsm: error:")]
    assert len(lines) == 1 and pattern in lines[0], err
    assert "Traceback" not in err and "Exception ignored" not in err, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table", "zeek"])
def test_disk_full_on_output_file_is_one_error_line(fmt):
    p = tcpfsm_cmd("analyze", MIXED, "--format", fmt, "-o", "/dev/full", capture_output=True)
    assert_one_error_line(p, "cannot write /dev/full: No space left on device")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [("analyze", MIXED, "--format", "jsonl"), ("analyze", MIXED),
                                  ("netstat", MIXED, "--at", "+1s", "--format", "json"),
                                  ("timeline", MIXED), ("states", MIXED, "--format", "csv")])
def test_disk_full_on_stdout_is_one_error_line(args):
    with open("/dev/full", "wb") as full:
        p = tcpfsm_cmd(*args, stdout=full, stderr=subprocess.PIPE)
    assert_one_error_line(p, "cannot write stdout: No space left on device")


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "table"])
def test_reader_gone_before_the_first_write_ends_quietly(fmt):
    """The pipe's read end is closed before tcpfsm writes: every write is EPIPE. Quiet, exit 0."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TCPFSM_DEBUG", None)
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "tcpfsm.cli", "analyze", MIXED, "--format", fmt], cwd=ROOT,
                           env=env, stdout=w, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(w)
    err = p.stderr.decode()
    assert p.returncode == 0 and "Traceback" not in err and "Exception ignored" not in err \
        and "error" not in err, err


def test_head_1_gets_a_whole_first_line_and_no_complaint():
    cmd = f"{sys.executable} -m tcpfsm.cli analyze {MIXED} --format jsonl | head -1"
    p = subprocess.run(["sh", "-c", cmd], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       capture_output=True, timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout)["event"] == "transition"
    assert "Traceback" not in p.stderr.decode() and "error" not in p.stderr.decode(), p.stderr.decode()


def test_json_file_output_is_the_reference_document(tmp_path):
    out = tmp_path / "a.json"
    p = tcpfsm_cmd("analyze", MIXED, "--format", "json", "-o", str(out), "-q", capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(out.read_bytes()) == json.loads(ref_analysis_json(tcpfsm.analyze(MIXED)))


def test_streamed_jsonl_and_json_match_the_unstreamed_reference(tmp_path):
    """--stream hands flows out while reading (spool for json): the documents parse the same as before."""
    an = tcpfsm.analyze(MIXED, path_health=False)      # (path health needs the whole capture: not streamed)
    for fmt in ("json", "jsonl"):
        out = tmp_path / f"s.{fmt}"
        p = tcpfsm_cmd("analyze", MIXED, "--stream", "--format", fmt, "-o", str(out), "-q", capture_output=True)
        assert p.returncode == 0, p.stderr.decode()
        if fmt == "json":
            doc = json.loads(out.read_bytes())
            want = json.loads(ref_analysis_json(an))
            key = lambda f: f["id"]     # noqa: E731  (streamed flows come out as they finish)
            assert sorted(doc["flows"], key=key) == sorted(want["flows"], key=key)
        else:
            canon = lambda lines: sorted(json.dumps(json.loads(x), sort_keys=True) for x in lines)  # noqa: E731
            got = [x for x in out.read_text().splitlines() if '"event":"stats"' not in x]
            want = [x for x in ref_event_lines(an) if not x.startswith('{"event": "stats"')]
            assert canon(got) == canon(want)


def test_version_does_not_import_the_analysis_stack():
    # numpy may load: --version checks the compiled kernels it names (their extension imports numpy), and
    # the start-up target is stated against `python -c "import numpy"`
    code = ("import sys; from tcpfsm.cli import main\n"
            "try: main(['--version'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('networkx', 'rich', 'scapy', 'dpkt', 'pyshark', 'tcpfsm.api',"
            " 'tcpfsm.zeek.tracker', 'tcpfsm.live.cli') if m in sys.modules]\n"
            "print(heavy)")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       capture_output=True, timeout=60)
    out = p.stdout.decode().splitlines()
    assert out[0] == f"tcpfsm, version {tcpfsm.__version__}" and out[1].startswith("compiled kernels:")
    assert out[-1] == "[]", p.stderr.decode()


def test_json_analysis_does_not_import_rich_or_the_other_decoders():
    code = ("import sys; from tcpfsm.cli import main\n"
            f"main(['analyze', {MIXED!r}, '--format', 'json', '-o', '/dev/null'])\n"
            "print([m for m in ('rich', 'scapy', 'dpkt', 'pyshark', 'tcpfsm.live.cli') if m in sys.modules])")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       capture_output=True, timeout=60)
    assert p.stdout.decode().strip() == "[]", p.stderr.decode()


def test_lazy_commands_are_all_listed_and_their_options_resolved():
    p = tcpfsm_cmd("--help", capture_output=True)
    assert p.returncode == 0
    listed = p.stdout.decode()
    from tcpfsm.cli import COMMANDS
    assert all(f"  {name} " in listed for name in COMMANDS), listed
    p = tcpfsm_cmd("analyze", "--help", capture_output=True)
    helptext = p.stdout.decode()
    assert p.returncode == 0 and "linux" in helptext and "time_wait" in helptext and "--threshold" in helptext
    p = tcpfsm_cmd("analyse", MIXED, capture_output=True)
    assert_one_error_line(p, "No such command")


# -- the writer thread (WRITE_AHEAD) -------------------------------------------------------------------
def test_chunks_are_written_by_the_writer_thread_in_order_and_all_before_close_returns(tmp_path, monkeypatch):
    fake = FakeWrites(cap=777)
    threads = []

    def write(fd, view):
        threads.append(threading.current_thread().name)
        return fake(fd, view)
    monkeypatch.setattr(output.os, "write", write)
    monkeypatch.setattr(output, "CHUNK", 4096)
    pieces = [bytes([i % 251]) * (i * 131 % 9000 + 1) for i in range(400)]     # some a chunk by themselves
    out = output.Output(str(tmp_path / "o"))
    for p in pieces:
        out.write(p)
    out.close()
    assert bytes(fake.data) == b"".join(pieces)
    assert set(threads) == {"tcpfsm-writer"}
    assert not [t for t in threading.enumerate() if t.name == "tcpfsm-writer"]


def test_a_failure_in_the_writer_is_raised_to_the_renderer_and_nothing_after_it_is_written(tmp_path, monkeypatch):
    fake = FakeWrites(cap=10_000, fail_after=50_000)
    failed = []

    def write(fd, view):
        try:
            return fake(fd, view)
        except OSError:
            failed.append(len(view))
            raise
    monkeypatch.setattr(output.os, "write", write)
    monkeypatch.setattr(output, "CHUNK", 8192)
    with pytest.raises(output.OutputError, match=r"cannot write .*: No space left on device"):
        with output.Output(str(tmp_path / "o")) as out:
            for _ in range(1000):
                out.write(b"y" * 1000)
    assert 50_000 <= len(fake.data) < 60_000
    assert len(failed) == 1                                # no chunk after the failing one was tried
    assert not [t for t in threading.enumerate() if t.name == "tcpfsm-writer"]


def test_a_reader_gone_in_the_writer_is_a_broken_pipe_for_the_renderer(tmp_path, monkeypatch):
    def gone(fd, view):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(output.os, "write", gone)
    monkeypatch.setattr(output, "CHUNK", 1024)
    with pytest.raises(BrokenPipeError):
        with output.Output(str(tmp_path / "o")) as out:
            for _ in range(100):
                out.write(b"z" * 500)
