"""The fuzz harness (fuzz/): its mutations do what they say, and its judge sees the failures it claims to see.

The fuzzing itself runs from `make fuzz` (10 minutes) and, for a minute, from `make test`; these tests
keep the harness honest: a harness whose oracle cannot fail finds nothing.
"""
from __future__ import annotations

import importlib.util
import io
import json
import sys
import time
from pathlib import Path

import dpkt
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))
import mutate  # noqa: E402

_spec = importlib.util.spec_from_file_location("tcpfsm_fuzz_run", ROOT / "fuzz" / "run.py")   # not bench/run.py
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

CAPTURE = ROOT / "captures" / "kernel" / "normal_close_client.pcap"
ANALYZE_JSON = next(i for i, c in enumerate(fuzz.COMMANDS) if c[0] == "analyze:json")
API = next(i for i, c in enumerate(fuzz.COMMANDS) if c[0] == "api")


@pytest.fixture(scope="module")
def seeds():
    return fuzz.load_seeds()


def _seed_index(seeds, name: str) -> int:
    return next(i for i, s in enumerate(seeds) if s[0] == name)


def test_every_seed_capture_parses_and_writes_back_byte_for_byte(seeds):
    """The model loses nothing: mutants differ from their seed only where a mutation acted."""
    assert len(seeds) > 50
    for name, raw, model in seeds:
        assert model is not None, name
        assert mutate.serialize(model) == raw, name


def _first_tcp(model):
    for i, r in enumerate(model.records()):
        lay = mutate.layers(r.data, r.linktype)
        if lay.tcp is not None:
            return i, r, lay
    raise AssertionError("no TCP record")


def test_a_packet_field_mutation_sets_that_field():
    raw = CAPTURE.read_bytes()
    m = mutate.parse(raw)
    i, r, lay = _first_tcp(m)
    b = [f[2] for f in lay.fields].index("flags")
    out = mutate.apply(mutate.parse(raw), raw, [(mutate.OPS.index("packet_field"), i, b, 2 * 0x29)])
    pkts = list(dpkt.pcap.Reader(io.BytesIO(out)))
    tcp = dpkt.ethernet.Ethernet(pkts[i][1]).data.data
    assert tcp.flags == 0x29                                    # FIN | PSH | URG, as asked
    assert [p[1] for j, p in enumerate(pkts) if j != i] == [p.data for j, p in enumerate(m.records()) if j != i]


def test_new_tcp_options_keep_the_record_consistent():
    """With an even `b` the data offset and IP length follow the new options: dpkt parses them."""
    raw = CAPTURE.read_bytes()
    i, r, lay = _first_tcp(mutate.parse(raw))
    out = mutate.apply(mutate.parse(raw), raw, [(mutate.OPS.index("tcp_options"), i, 0, 2 + 5 * 3)])
    pkt = list(dpkt.pcap.Reader(io.BytesIO(out)))[i][1]
    ip = dpkt.ethernet.Ethernet(pkt).data
    assert ip.len == len(pkt) - 14
    assert ip.data.off * 4 == 20 + len(mutate.tcp_options(2 + 5 * 3))


def test_a_lying_record_length_is_written_as_asked():
    raw = CAPTURE.read_bytes()
    out = mutate.apply(mutate.parse(raw), raw, [(mutate.OPS.index("record_length"), 0, 0, 1)])   # caplen = max
    assert out[24 + 8:24 + 12] == b"\xff\xff\xff\xff"


@pytest.mark.parametrize("data,kind,ok", [
    (b'{"a": 1.5}\n', "json", True),
    (b'{"a": NaN}\n', "json", False),
    (b'{"a": Infinity}\n', "json", False),
    (b'{"a": 1}\n{"b"', "jsonl", False),
    (b'{"a": 1}\n{"b": 2}\n', "jsonl", True),
    (b"ts,host\n1.0,nan\n", "csv", False),
    (b"ts,host\n1.0,10.0.0.1\n", "csv", True),
    (b"x\t-inf\n", "tsv", False),
    (b"ESTABLISHED  inf s\n", "text", False),
    (b"info: 3 flows, 0.5 s\n", "text", True),
    (b"\xff\xfe", "text", False),
])
def test_the_output_judge(data, kind, ok):
    if ok:
        fuzz.check_output(data, kind, "t")
    else:
        with pytest.raises(fuzz.Failure):
            fuzz.check_output(data, kind, "t")


@pytest.mark.parametrize("err,code,ok", [
    ("", 0, True),
    ("tcpfsm: warning: truncated\ntcpfsm: 3 records\n", 0, True),
    ("tcpfsm: error: x.pcap: not a pcap or pcapng file\n", 2, True),
    ("tcpfsm: error: internal error: KeyError: 1 (set TCPFSM_DEBUG=1 for details)\n", 1, False),
    ('Traceback (most recent call last):\n  File "/x/tcpfsm/api.py", line 3, in f\nKeyError: 1\n', 2, False),
    ("tcpfsm: error: first\ntcpfsm: error: second\n", 2, False),
    ("tcpfsm: error: bad\n  continued on a second line\n", 2, False),
    ("", -11, False),
])
def test_the_stderr_and_exit_judge(err, code, ok):
    if ok:
        fuzz.check_stderr(err, code, "t")
    else:
        with pytest.raises(fuzz.Failure):
            fuzz.check_stderr(err, code, "t")


def test_a_bug_behind_the_cli_is_caught_located_and_kept(seeds, tmp_path, monkeypatch):
    """An exception inside a renderer: the CLI prints one line and exits 1; the harness names the bug by
    its type and innermost tcpfsm frame and keeps the case, replacing it only by a smaller one."""
    from tcpfsm.render import records

    def broken(an, out, spooled=None):
        return {}["no such key"]
    monkeypatch.setattr(records, "write_analysis_json", broken)
    monkeypatch.setattr(broken, "__code__", broken.__code__.replace(co_filename="/x/tcpfsm/render/records.py"))
    r = fuzz.Runner(seeds, 30, tmp_path)
    seed = _seed_index(seeds, "captures/kernel/normal_close_client.pcap")
    big = (seed, [(8, 3, 0, 7), (8, 5, 0, 9)], 0, 0, 0, ANALYZE_JSON, 0, 0)
    with pytest.raises(fuzz.Failure) as e:
        r.run(big)
    assert e.value.sig.startswith("exit-1:analyze:json/fast:KeyError@tcpfsm/render/records.py:broken")
    kept = fuzz.keep(seeds, big, e.value, tmp_path / "failures")
    meta = json.loads((kept / "case.json").read_text())
    assert (kept / "case.pcap").read_bytes() == fuzz.build_case(seeds, big)
    assert meta["command"] == "analyze:json" and "KeyError" in meta["traceback"]
    small = (seed, [], 0, 0, 0, ANALYZE_JSON, 0, 0)
    fuzz.keep(seeds, small, e.value, tmp_path / "failures")
    assert json.loads((kept / "case.json").read_text())["ops"] == []
    fuzz.keep(seeds, big, e.value, tmp_path / "failures")            # larger again: not kept
    assert json.loads((kept / "case.json").read_text())["ops"] == []


def test_a_hang_and_a_nan_through_the_api_are_failures(seeds, tmp_path, monkeypatch):
    import tcpfsm
    from tcpfsm import api
    seed = _seed_index(seeds, "captures/kernel/normal_close_client.pcap")
    case = (seed, [], 0, 0, 0, API, 0, 0)
    fuzz.Runner(seeds, 30, tmp_path).run(case)                       # untouched: passes
    real_summary = api.Analysis.summary
    monkeypatch.setattr(api.Analysis, "summary", lambda self: dict(real_summary(self), duration=float("nan")))
    with pytest.raises(fuzz.Failure) as e:
        fuzz.Runner(seeds, 30, tmp_path).run(case)
    assert e.value.sig.startswith("nonfinite-api:")
    monkeypatch.setattr(tcpfsm, "analyze", lambda *a, **k: time.sleep(5))
    t0 = time.perf_counter()
    with pytest.raises(fuzz.Failure) as e:
        fuzz.Runner(seeds, 0.5, tmp_path).run(case)
    assert e.value.sig == "hang:api/fast" and time.perf_counter() - t0 < 3


def test_an_accidental_value_error_is_not_taken_for_a_refusal(seeds, tmp_path, monkeypatch):
    """ValueError is how tcpfsm refuses bad input -- but one from int() or numpy deep inside is a bug."""
    import tcpfsm
    seed = _seed_index(seeds, "captures/kernel/normal_close_client.pcap")

    def accidental(*a, **k):
        return int("not a number")
    monkeypatch.setattr(tcpfsm, "analyze", accidental)
    with pytest.raises(fuzz.Failure) as e:
        fuzz.Runner(seeds, 30, tmp_path).run((seed, [], 0, 0, 0, API, 0, 0))
    assert e.value.sig.startswith("ValueError")
