"""The compiled kernels equal their plain-Python sources, which equal the scalar reference and the dpkt engine.

Both forms of the decode kernel are loaded in this one process: the source by its own name
(tcpfsm.capture._decode) and the extension by its (tcpfsm.capture._decode_c); the reader is pointed at one
or the other. `make test` runs this file a second time with TCPFSM_PURE=1 (the loader's choice for the rest
of the suite), so the uncompiled form also drives the whole reader there.
"""
from __future__ import annotations

import importlib
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tcpfsm
import tcpfsm._kernels as kernels
import tcpfsm.capture.reader as reader
from tcpfsm.capture.batch import ALL_COLUMNS
from test_capture import LINKS_FOR_PROPS, SEGMENT, build_segment
from test_decoders import assert_same, capture_files, decode

ROOT = Path(__file__).resolve().parent.parent
PURE = importlib.import_module("tcpfsm.capture._decode")
try:
    COMPILED = importlib.import_module("tcpfsm.capture._decode_c")
except ImportError:
    COMPILED = None
KERNELS = [pytest.param(PURE, id="pure"), pytest.param(COMPILED, id="compiled")]
ALL_CAPTURES = [pytest.param(p.values[0], id=p.id) for p in capture_files()]


@pytest.fixture
def use_kernel(monkeypatch):
    """Point the reader at one form of the kernel for the rest of the test."""
    def use(mod):
        if mod is None:
            pytest.fail("tcpfsm.capture._decode_c is not built (make venv / pip install -e . compiles it)")
        monkeypatch.setattr(reader, "_kernel", mod)
    return use


# ------------------------------------------------------------------ the build and the loader
def test_extension_is_built_from_this_source():
    assert COMPILED is not None, "tcpfsm.capture._decode_c is not built (make venv / pip install -e . compiles it)"
    assert COMPILED.__file__.endswith(".so")
    assert COMPILED.__source_sha256__ == kernels._source_sha256("tcpfsm.capture._decode"), "stale: rebuild"


def test_makefile_rebuilds_every_kernel():
    """make venv's stamp depends on every kernel's source: an edited kernel is rebuilt by the next make target,
    not left for the loader to refuse as stale (the slow pure module would then run)."""
    text = (ROOT / "Makefile").read_text()
    block = text.split("KERNEL_SOURCES :=", 1)[1].split("\n$(STAMP)", 1)[0]
    listed = set(block.replace("\\", " ").split())
    assert listed == {k.replace(".", "/") + ".py" for k in kernels.KERNELS}
    assert "$(STAMP): pyproject.toml setup.py tcpfsm/_kernels.py $(KERNEL_SOURCES)" in text


def test_loader_follows_TCPFSM_PURE():
    """The reader runs the extension unless TCPFSM_PURE=1; tcpfsm.compiled() and --version say which."""
    assert reader._kernel is (PURE if kernels.pure_forced() else COMPILED)
    assert tcpfsm.compiled() == {k: not kernels.pure_forced() for k in kernels.KERNELS}
    code = "import tcpfsm, tcpfsm.capture.reader as r; print(tcpfsm.compiled(), r._kernel.__name__)"
    for pure, expect in (("1", f"{dict.fromkeys(kernels.KERNELS, False)} tcpfsm.capture._decode"),
                         ("0", f"{dict.fromkeys(kernels.KERNELS, True)} tcpfsm.capture._decode_c")):
        env = dict(os.environ, TCPFSM_PURE=pure)
        assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              check=True).stdout.strip() == expect
        out = subprocess.run([sys.executable, "-m", "tcpfsm.cli", "--version"], env=env, capture_output=True,
                             text=True, check=True).stdout
        names = ", ".join(k.rsplit(".", 1)[-1].lstrip("_") for k in kernels.KERNELS)
        assert (f"compiled kernels: {names}\n" in out) == (pure == "0"), out


def test_stale_extension_is_not_used(monkeypatch):
    monkeypatch.delenv("TCPFSM_PURE", raising=False)
    monkeypatch.setattr(kernels, "_source_sha256", lambda name: "edited since the build")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert kernels.load("tcpfsm.capture._decode") is PURE
    assert "compiled from another version" in str(w[0].message)
    monkeypatch.undo()
    kernels.load("tcpfsm.capture._decode")     # (restore the loader's record for compiled())


def test_status_codes_follow_skip_reasons():
    for mod in (PURE, COMPILED):
        assert mod.SKIP_REASONS == reader.SKIP_REASONS
        assert mod.STATUS_CODES == tuple(range(len(mod.STATUS_CODES)))
    assert reader._CODE["malformed_tcp"] == len(PURE.STATUS_CODES) - 1


# ------------------------------------------------------------------ every capture
@pytest.mark.parametrize("path", ALL_CAPTURES)
def test_capture_compiled_equals_pure_equals_scalar(path, use_kernel, monkeypatch):
    """All columns, CaptureInfo (skip counts by reason, checksums, tunnels) and notes, with small batches
    too: the compiled kernel, its source, and the scalar parser on every record (today's reference)."""
    out = []
    for mod in (COMPILED, PURE):
        use_kernel(mod)
        out.append(decode(reader.open_capture, path))
        out.append(decode(reader.open_capture, path, 5))
    monkeypatch.setattr(reader, "_FORCE_SCALAR", True)
    out.append(decode(reader.open_capture, path))
    (c0, cols0), rest = out[0], out[1:]
    for c, cols in rest:
        assert c.info == c0.info and c.notes == c0.notes
        for k in ALL_COLUMNS:
            assert cols[k].tobytes() == cols0[k].tobytes(), k


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("path", [p for p in capture_files() if not p.marks])
def test_capture_equals_dpkt_engine(path, kernel, use_kernel):
    """test_decoders' comparison with the dpkt reference engine, through each form of the kernel (tunnels/
    excepted: the dpkt engine does not decapsulate)."""
    use_kernel(kernel)
    assert_same(path)


# ------------------------------------------------------------------ random and damaged records
def _run(mod, buf, doffs, caps, origs, lts):
    n = len(doffs)
    st_ = np.full(n, 99, np.int8)
    rows = np.zeros(n, np.int64)
    cols = {k: np.zeros((n, 16) if k in ("src", "dst") else n, np.uint8 if k in ("src", "dst") else ALL_COLUMNS[k])
            for k in reader._KERNEL_COLS}
    views = [c.view(np.uint8) if c.dtype == np.bool_ else c for c in cols.values()]
    m = mod.decode_group(buf, doffs, caps, origs, lts, st_, rows, *views)
    return m, st_, rows, cols


LINK_TYPES = st.sampled_from([1, 113, 276, 101, 12, 14, 228, 229, 0, 108, -1, 147, 9, 10, 50, 51, 104, 105, 127, 192, 239])
MUTATION = st.tuples(st.integers(0, 120), st.integers(0, 255))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(SEGMENT, st.sampled_from(LINKS_FOR_PROPS), LINK_TYPES, st.booleans(),
                          st.lists(MUTATION, max_size=5), st.integers(0, 200), st.integers(-20, 70000)),
                min_size=1, max_size=8))
def test_random_records_compiled_equals_pure_equals_parse_one(recs):
    """Generated segments on random link types, with bytes overwritten (IHL, lengths, data offsets...), cut
    short and given odd original lengths: both forms of the kernel agree on every output and never raise,
    and every record they decide is decided as reader._parse_one decides it."""
    if COMPILED is None:
        pytest.fail("tcpfsm.capture._decode_c is not built")
    buf, doffs, caps, origs, lts = bytearray(b"\xee" * 3), [], [], [], []
    for seg, link, lt_other, keep_lt, muts, cut, orig_delta in recs:
        lt, frame, _ = build_segment(dict(seg, link=link))
        frame = bytearray(frame)
        for pos, val in muts:
            if pos < len(frame):
                frame[pos] = val
        cap = min(len(frame), cut if cut < 120 else len(frame))
        doffs.append(len(buf))
        caps.append(cap)
        origs.append(max(0, len(frame) + orig_delta) if orig_delta < 60000 else 0)
        lts.append(lt if keep_lt else lt_other)
        buf += frame[:cap]
    buf = bytes(buf + b"\xee" * 3)
    arrs = [np.array(a, np.int64) for a in (doffs, caps, origs, lts)]
    m1, st1, rows1, cols1 = _run(COMPILED, buf, *arrs)
    m2, st2, rows2, cols2 = _run(PURE, buf, *arrs)
    assert m1 == m2 and st1.tolist() == st2.tolist() and rows1[:m1].tolist() == rows2[:m2].tolist()
    for k in cols1:
        assert cols1[k][:m1].tobytes() == cols2[k][:m2].tobytes(), k
    assert set(st1.tolist()) <= set(PURE.STATUS_CODES)
    row_of = {int(r): j for j, r in enumerate(rows1[:m1])}
    for i, code in enumerate(st1.tolist()):
        ref = reader._parse_one(memoryview(buf)[doffs[i]:doffs[i] + caps[i]], lts[i], origs[i])
        if code == reader._SLOW:
            continue
        if code != reader._OK:
            assert ref == reader.SKIP_REASONS[code - 2]
            continue
        j = row_of[i]
        assert not isinstance(ref, str) and not ref[17] and ref[18] == ""     # no fragment, no tunnel
        got = [int(cols1[k][j]) if k not in ("src", "dst") else bytes(cols1[k][j]) for k in reader._SCALAR_COLS]
        assert got == [int(v) if not isinstance(v, bytes) else v for v in ref[:17]]
        assert int(cols1["csum"][j]) == ref[19]
        assert int(cols1["ttl"][j]) == ref[20]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 10), st.booleans())
def test_record_walkers_compiled_equal_pure(blob, limit, big):
    out1, out2 = np.zeros(limit, np.int64), np.zeros(limit, np.int64)
    hdr1, hdr2 = np.zeros((4, limit), np.int64), np.zeros((4, limit), np.int64)
    for pos in (0, 5):
        r1 = COMPILED.walk_pcap(blob, pos, len(blob), limit, big, out1, hdr1)
        r2 = PURE.walk_pcap(blob, pos, len(blob), limit, big, out2, hdr2)
        assert r1 == r2 and out1[:r1[0]].tolist() == out2[:r2[0]].tolist()
        assert hdr1[:, :r1[0]].T.tolist() == hdr2[:, :r2[0]].T.tolist() == [     # each header's words, in its order
            list(struct.unpack_from((">" if big else "<") + "4I", blob, o)) for o in out1[:r1[0]].tolist()]
        r1 = COMPILED.walk_epbs(blob, pos, len(blob), limit, big, out1, 0)
        r2 = PURE.walk_epbs(blob, pos, len(blob), limit, big, out2, 0)
        assert r1 == r2 and out1[:r1[0]].tolist() == out2[:r2[0]].tolist()


# ------------------------------------------------------------------ flow keys (for the tracker to call)
def _key_cols(addrs, ports):
    n = len(ports)
    return {"src": np.frombuffer(b"".join(a for a, _ in addrs), "V16") if n else np.zeros(0, "V16"),
            "dst": np.frombuffer(b"".join(b for _, b in addrs), "V16") if n else np.zeros(0, "V16"),
            "sport": np.array([p for p, _ in ports], np.uint16), "dport": np.array([q for _, q in ports], np.uint16),
            "ts": np.zeros(n, np.int64)}


ADDR = st.sampled_from([b"\0" * 16, b"\0" * 10 + b"\xff\xff\x0a\0\0\x01", b"\0" * 10 + b"\xff\xff\x0a\0\0\x02",
                        b"\x20\x01" + b"\0" * 14]) | st.binary(min_size=16, max_size=16)
PORT = st.sampled_from([0, 1, 80, 255, 256, 443, 65535]) | st.integers(0, 65535)


def _flow_key_array(c: dict) -> tuple:
    """The flow key, defined in numpy (what the tracker used before the kernel): the lower (address, port)
    side's 16-byte address and big-endian port, then the other side's, as V36; and whether the row's source
    is the lower side."""
    n = len(c["sport"])
    a = np.empty((n, 18), np.uint8)
    b = np.empty((n, 18), np.uint8)
    a[:, :16] = c["src"].view(np.uint8).reshape(n, 16)
    b[:, :16] = c["dst"].view(np.uint8).reshape(n, 16)
    a[:, 16:] = c["sport"].astype(">u2").view(np.uint8).reshape(n, 2)
    b[:, 16:] = c["dport"].astype(">u2").view(np.uint8).reshape(n, 2)
    lo = a.view("S18").ravel() <= b.view("S18").ravel()
    key = np.where(lo[:, None], np.concatenate([a, b], axis=1), np.concatenate([b, a], axis=1))
    return np.ascontiguousarray(key).view("V36").ravel(), lo


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.tuples(ADDR, ADDR), st.tuples(PORT, PORT)), max_size=20))
def test_flow_keys_compiled_equals_pure_equals_flowtable(rows):
    """capture.keys.flow_key_array (the kernel, compiled and not) returns the numpy definition's keys."""
    from tcpfsm.capture import keys
    c = _key_cols([a for a, _ in rows], [p for _, p in rows])
    want_key, want_lo = _flow_key_array(c)
    for mod in (COMPILED, PURE):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(keys, "_kernel", mod)
            key, lo = keys.flow_key_array(c)
        assert key.dtype == want_key.dtype and key.tobytes() == want_key.tobytes()
        assert lo.dtype == want_lo.dtype and lo.tolist() == want_lo.tolist()


@pytest.mark.parametrize("name", ["kernel/concurrent_mixed.pcap", "links/ipv6_ext.pcap", "tunnels/vxlan.pcap"])
def test_flow_keys_on_captures(name):
    from tcpfsm.capture.keys import flow_key_array
    for b in reader.open_capture(os.path.join(os.path.dirname(reader.__file__), "..", "..", "captures", name)).batches(64):
        (k1, l1), (k2, l2) = flow_key_array(b.cols), _flow_key_array(b.cols)
        assert k1.tobytes() == k2.tobytes() and l1.tolist() == l2.tolist()
