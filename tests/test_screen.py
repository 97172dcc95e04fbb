"""The screen before the per-flow rules (rules.screen, compiled in tcpfsm/detect/_tally.py) never calls a
flow CLEAN that a rule fires on nor BRIEF where a close-state span rule fires (the rules skip those for it),
and says as the flow does whether its client entered ESTABLISHED and whether both ends are ESTABLISHED: on
every flow of every capture under captures/, at the capture's end and long after it, with the default
thresholds and with thresholds so low that every span rule fires."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import tcpfsm
from floodgen import write_established, write_flood
from tcpfsm.detect.rules import (BRIEF, CLEAN, CLIENT_ESTABLISHED, OPEN, Thresholds, _SCREENED, _limits, _was, judge,
                                 screen)
from tcpfsm.fsm import State

ROOT = Path(__file__).resolve().parent.parent / "captures"
CAPTURES = sorted(p for p in ROOT.rglob("*") if p.suffix in (".pcap", ".pcapng"))
LOW = Thresholds().override(half_open_after=0.001, stuck_close_wait=0.001, lingering_fin_wait_2=0.001,
                            fin_wait_1_unacked=0.001, last_ack_unacked=0.001, vanished_retrans_count=1,
                            unanswered_syn_after=0.001, slow_connect=0.001)


def _sound(an) -> None:
    flows = an.flows
    for th in (Thresholds(), LOW):
        for end in (an.end, an.end + 3600 * 10**9):
            flags = screen(flows, end, th)
            assert len(flags) == len(flows)
            for f, fl in zip(flows, flags):
                full = judge(f, end, th)
                if fl & CLEAN:
                    assert full == [], (f.id, th is LOW, end)
                assert judge(f, end, th, fl) == full, (f.id, th is LOW, end)        # (the flags taken as read)
                assert bool(fl & CLIENT_ESTABLISHED) == _was(f, "client", State.ESTABLISHED), f.id
                assert bool(fl & OPEN) == (f.conn.client.state is f.conn.server.state is State.ESTABLISHED), f.id


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(ROOT)))
def test_screen_is_sound_on_every_capture(path):
    try:
        an = tcpfsm.analyze(str(path))
    except Exception as e:                  # (a capture meant to be refused: nothing to screen)
        pytest.skip(f"not analysed: {e}")
    _sound(an)


def test_screen_is_sound_on_half_open_and_never_closing_connections(tmp_path):
    """A SYN-cookie server's SYN+ACKs that no ACK follows (half_open, once held long enough), connections
    that never close (ESTABLISHED at the end)."""
    write_flood(str(tmp_path / "flood.pcap"), 300, answered=0.5)
    write_established(str(tmp_path / "open.pcap"), 200)
    for name in ("flood.pcap", "open.pcap"):
        _sound(tcpfsm.analyze(str(tmp_path / name)))


def test_screen_finds_plain_connections_clean():
    path = ROOT / "kernel" / "normal_close_client.pcap"
    an = tcpfsm.analyze(str(path))
    flags = screen(an.flows, an.end, Thresholds())
    assert flags and all(fl & CLEAN for fl in flags)


# ------------------------------------------------------------------ the kernel's walk, read as written
PURE = importlib.import_module("tcpfsm.detect._tally")
try:
    COMPILED = importlib.import_module("tcpfsm.detect._tally_c")
except ImportError:
    COMPILED = None
_SPAN_LIMIT = {State.CLOSE_WAIT: 1, State.FIN_WAIT_2: 2, State.FIN_WAIT_1: 3, State.CLOSING: 3, State.LAST_ACK: 4}


def _reference_flags(f, end: int, limits: tuple) -> int:
    """A flow's screen flags as the kernel's docstring states them, every field read, every transition walked
    with every field read: the readable reference for the kernel, which reads a transition's fields only
    where they can change the answer."""
    conn, c, s = f.conn, f.conn.client, f.conn.server

    def brief_stay(state, start, stop) -> bool:
        k = _SPAN_LIMIT.get(state)
        if k is None:
            return True
        return start >= 0 and stop >= 0 and stop - start < limits[k]

    clean = not conn.violations and not f.role_inferred and conn.rst_by is None and not s.rsts \
        and c.retrans_unanswered < limits[0] and s.retrans_unanswered < limits[0] \
        and (c.syns == 0 or (c.syns == 1 and s.packets > 0)) and s.synacks <= 1 and f.reuse_of is None
    brief = len(c.fin_ts) <= 1 and len(s.fin_ts) <= 1
    state = {"client": c.initial, "server": s.initial}
    since = {"client": f.first_ts, "server": f.first_ts}
    entered_est = set()
    for t in conn.transitions:
        if t.new is State.ESTABLISHED:
            entered_est.add(t.endpoint)
        if t.retracted and (state[t.endpoint] in _SPAN_LIMIT or t.new in _SPAN_LIMIT):
            continue                # (undone: the endpoint held its watched state all along)
        if state[t.endpoint] in _SPAN_LIMIT or t.new in _SPAN_LIMIT:
            brief = brief and brief_stay(state[t.endpoint], since[t.endpoint], t.at)
            since[t.endpoint] = t.at
        state[t.endpoint] = t.new
    for role in ("client", "server"):
        brief = brief and brief_stay(state[role], since[role], max(end, since[role]))
    clean = clean and brief and (s.synacks == 0 or "server" in entered_est)
    return (CLEAN if clean else 0) | (CLIENT_ESTABLISHED if "client" in entered_est else 0) \
        | (BRIEF if brief else 0) | (OPEN if c.state is State.ESTABLISHED and s.state is State.ESTABLISHED else 0)


@pytest.mark.parametrize("kernel", [pytest.param(PURE, id="pure"), pytest.param(COMPILED, id="compiled")])
def test_the_kernel_reads_what_the_reference_reads(kernel, tmp_path):
    """Both forms of the screen give each flow the reference's flags exactly (not only soundly), on every
    capture, a flood and never-closing connections, at the end and long after it, with the default
    thresholds and with thresholds so low that every span rule fires."""
    if kernel is None:
        pytest.fail("tcpfsm.detect._tally_c is not built (make venv / pip install -e . compiles it)")
    write_flood(str(tmp_path / "flood.pcap"), 300, answered=0.5)
    write_established(str(tmp_path / "open.pcap"), 200)
    seen = set()
    for path in CAPTURES + [tmp_path / "flood.pcap", tmp_path / "open.pcap"]:
        try:
            an = tcpfsm.analyze(str(path))
        except Exception:                   # (a capture meant to be refused)
            continue
        for th in (Thresholds(), LOW):
            limits = _limits(th)
            for end in (an.end, an.end + 3600 * 10**9):
                got = kernel.screen(list(an.flows), end, limits, _SCREENED)
                want = bytearray(_reference_flags(f, end, limits) for f in an.flows)
                assert got == want, (str(path), th is LOW, end)
                seen.update(got)
    assert {CLEAN | BRIEF, BRIEF, 0} <= {fl & (CLEAN | BRIEF) for fl in seen}      # (every case was met)


def test_the_state_before_an_instant_is_the_last_one_entered_before_it():
    """rules._state_before (read from the end of the transitions) names the state the forward walk it replaced
    names: the last transition of the endpoint stamped before the instant, in the flow's order, else its
    initial state; at every transition's time and around it, on every capture's flows."""
    from tcpfsm.detect.rules import _state_before

    def forward(flow, role, ts):
        st = flow.conn.client.initial if role == "client" else flow.conn.server.initial
        for t in flow.transitions:
            if t.endpoint == role and t.ts < ts:
                st = t.new
        return st

    n = 0
    for path in CAPTURES[::3]:
        try:
            an = tcpfsm.analyze(str(path))
        except Exception:                   # (a capture meant to be refused)
            continue
        for f in an.flows:
            for ts in {f.first_ts - 1, f.last_ts + 1} | {t.ts + d for t in f.transitions for d in (-1, 0, 1)}:
                for role in ("client", "server"):
                    assert _state_before(f, role, ts) is forward(f, role, ts), (str(path), f.id, role, ts)
                    n += 1
    assert n > 1000
