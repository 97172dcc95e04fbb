"""The screen before the per-flow rules (rules.screen, compiled in tcpfsm/detect/_tally.py) never calls a
flow CLEAN that a rule fires on nor BRIEF where a close-state span rule fires (the rules skip those for it),
and says as the flow does whether its client entered ESTABLISHED and whether both ends are ESTABLISHED: on
every flow of every capture under captures/, at the capture's end and long after it, with the default
thresholds and with thresholds so low that every span rule fires."""
from __future__ import annotations

from pathlib import Path

import pytest

import tcpfsm
from floodgen import write_established, write_flood
from tcpfsm.detect.rules import CLEAN, CLIENT_ESTABLISHED, OPEN, Thresholds, _was, judge, screen
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
