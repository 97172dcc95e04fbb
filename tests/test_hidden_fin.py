"""Rule 5 of tcpfsm/fsm/machine.py: a FIN that may have left before its first copy seen.

Two ways a close stays off the wire, each with the evidence that reveals it afterwards:
- the first copies of the FIN were lost before the capture point: the sender's IP Identification (Linux: one
  per-connection counter, one step a packet) jumps over them;
- the FIN waited behind data held back by the peer's zero window: it rides on the data sent once the window
  reopened.
In both cases the SND_FIN transition carries `alt_before = (since, new state)`: from `since` on, the endpoint
may already have held its closing state, and netstat says so (`alt`). Hand-fed segments check the rule and
each condition that keeps it from firing; the kernel recordings of captures/matrix check it against `ss`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcpfsm import api
from tcpfsm.fsm import Connection, State, get_profile
from tcpfsm.fsm.machine import ACK, FIN, SYN

PSH = 0x08
MS = 1_000_000
T0 = 1_700_000_000 * 10**9
CISN, SISN = 1000, 5000
C, S = True, False
MATRIX = Path(__file__).resolve().parent.parent / "captures" / "matrix"


class Wire:
    """One Connection fed by hand; each side's IP IDs follow a per-connection counter unless given."""

    def __init__(self):
        self.conn = Connection(get_profile("linux"))
        self.n = 0
        self.ids = {C: 100, S: 500}

    def send(self, at_ms: float, fc: bool, flags: int, seq: int, ack: int = 0, plen: int = 0, win: int = 65535,
             ipid: int | None = None) -> "Wire":
        ts = T0 + int(at_ms * MS)
        self.n += 1
        if ipid is None:
            self.ids[fc] = (self.ids[fc] + 1) & 0xFFFF
            ipid = self.ids[fc]
        elif ipid:
            self.ids[fc] = ipid
        if self.n == 1:
            self.conn.start(ts, fc, flags)
        self.conn.expire(ts)
        self.conn.feed(ts, self.n, fc, flags, seq, ack, win, plen, 7 if flags & SYN else -1, 40 + plen, ipid)
        return self

    def fin_move(self, role: str):
        return next(t for t in self.conn.transitions if t.endpoint == role and t.cause == "FIN")


def _open_and_client_close() -> Wire:
    """Handshake (the SYN+ACK with IP ID 0, as Linux sends it), a request and its answer, the client's FIN
    and the server's ACK of it: the server is in CLOSE_WAIT after its packets with IDs 501, 502, 503."""
    w = Wire()
    w.send(0, C, SYN, CISN).send(1, S, SYN | ACK, SISN, CISN + 1, ipid=0).send(2, C, ACK, CISN + 1, SISN + 1)
    w.send(3, C, PSH | ACK, CISN + 1, SISN + 1, plen=100)
    w.send(4, S, ACK, SISN + 1, CISN + 101)
    w.send(5, S, PSH | ACK, SISN + 1, CISN + 101, plen=300)
    w.send(6, C, ACK, CISN + 101, SISN + 301)
    w.send(1000, C, FIN | ACK, CISN + 101, SISN + 301)
    w.send(1001, S, ACK, SISN + 301, CISN + 102)
    assert w.conn.server.state is State.CLOSE_WAIT
    return w


def test_fin_after_an_ip_id_gap_may_have_left_after_the_previous_packet():
    w = _open_and_client_close()
    w.send(9000, S, FIN | ACK, SISN + 301, CISN + 102, ipid=503 + 4)      # 4 packets never seen: the FIN's
    tr = w.fin_move("server")                                              # first copies, lost before the tap
    assert (tr.old, tr.new) == (State.CLOSE_WAIT, State.LAST_ACK)
    since, maybe = tr.alt_before
    assert maybe is State.LAST_ACK
    assert T0 + 1000 * MS < since <= T0 + 1001 * MS + 1                    # after its previous packet left


@pytest.mark.parametrize("why, fin_seq, ipid, earlier_ids", [
    ("consecutive IDs: nothing unseen", SISN + 301, 504, None),
    ("no ID (IPv6, or a reply sent without a socket)", SISN + 301, 0, None),
    ("too many unseen packets to be copies of one FIN", SISN + 301, 503 + 40, None),
    ("the FIN starts past the data seen: the unseen packets carried data", SISN + 301 + 1448, 507, None),
    ("IDs never made a single step: no per-connection counter", SISN + 301, 1200, (501, 700, 900)),
    ("an earlier step of more than one: a host-wide counter, or packets missed before", SISN + 301, 507,
     (497, 501, 502)),
])
def test_no_earlier_fin_without_the_evidence(why, fin_seq, ipid, earlier_ids):
    w = Wire()
    sids = earlier_ids or (501, 502, 503)
    w.send(0, C, SYN, CISN).send(1, S, SYN | ACK, SISN, CISN + 1, ipid=0).send(2, C, ACK, CISN + 1, SISN + 1)
    w.send(3, C, PSH | ACK, CISN + 1, SISN + 1, plen=100)
    w.send(4, S, ACK, SISN + 1, CISN + 101, ipid=sids[0])
    w.send(5, S, PSH | ACK, SISN + 1, CISN + 101, plen=300, ipid=sids[1])
    w.send(6, C, ACK, CISN + 101, SISN + 301)
    w.send(1000, C, FIN | ACK, CISN + 101, SISN + 301)
    w.send(1001, S, ACK, SISN + 301, CISN + 102, ipid=sids[2])
    w.send(9000, S, FIN | ACK, fin_seq, CISN + 102, ipid=ipid)
    assert w.fin_move("server").alt_before is None, why


def _stalled(reopen_ms: float = 10_000) -> Wire:
    """The client sends data; the server's window closes at 2 s (zero-window probes answered with window 0)
    and reopens at `reopen_ms`."""
    w = Wire()
    w.send(0, C, SYN, CISN).send(1, S, SYN | ACK, SISN, CISN + 1, ipid=0).send(2, C, ACK, CISN + 1, SISN + 1)
    seq = CISN + 1
    for k in range(4):
        w.send(1000 + k, C, ACK, seq, SISN + 1, plen=1448)
        seq += 1448
    w.send(2000, S, ACK, SISN + 1, seq, win=0)
    for t in (2300, 2900, 4100):                                          # probes, answered with window 0
        w.send(t, C, ACK, seq - 1, SISN + 1)
        w.send(t + 1, S, ACK, SISN + 1, seq, win=0)
    w.send(reopen_ms, S, ACK, SISN + 1, seq, win=65535)
    w.seq = seq
    return w


def test_fin_riding_on_data_after_a_zero_window_stall_may_have_been_requested_during_it():
    w = _stalled()
    w.send(10_001, C, ACK, w.seq, SISN + 1, plen=1448)
    w.send(10_002, C, FIN | PSH | ACK, w.seq + 1448, SISN + 1, plen=1448)
    tr = w.fin_move("client")
    assert (tr.old, tr.new) == (State.ESTABLISHED, State.FIN_WAIT_1)
    since, maybe = tr.alt_before
    assert maybe is State.FIN_WAIT_1
    assert T0 + 2000 * MS <= since < T0 + 2300 * MS                        # when the zero window reached it


@pytest.mark.parametrize("why, fin_at, fin_plen", [
    ("a FIN alone: nothing was queued in front of it", 10_002, 0),
    ("the data paused after the window reopened: the queue had drained", 12_500, 1448),
])
def test_no_queued_fin_without_the_evidence(why, fin_at, fin_plen):
    w = _stalled()
    w.send(10_001, C, ACK, w.seq, SISN + 1, plen=1448)
    w.send(fin_at, C, FIN | PSH | ACK, w.seq + 1448, SISN + 1, plen=fin_plen)
    assert w.fin_move("client").alt_before is None, why


def test_fin_on_data_without_any_stall_is_not_marked():
    w = Wire()
    w.send(0, C, SYN, CISN).send(1, S, SYN | ACK, SISN, CISN + 1, ipid=0).send(2, C, ACK, CISN + 1, SISN + 1)
    w.send(3, C, PSH | ACK, CISN + 1, SISN + 1, plen=100)
    w.send(4, S, ACK, SISN + 1, CISN + 101)
    w.send(5, C, FIN | PSH | ACK, CISN + 101, SISN + 1, plen=100)
    assert w.fin_move("client").alt_before is None


@pytest.mark.parametrize("cell, role, truth, shown", [
    ("fin_lost__middle__150ms__lost-before-tap", "server", "LAST-ACK", ("CLOSE_WAIT", "LAST_ACK")),
    ("fin_lost__server__150ms__lost-before-tap", "server", "LAST-ACK", ("CLOSE_WAIT", "LAST_ACK")),
    ("zero_window__client__150ms", "client", "FIN-WAIT-1", ("ESTABLISHED", "FIN_WAIT_1")),
])
def test_netstat_on_kernel_recordings_says_what_the_packets_leave_open(cell, role, truth, shown):
    """At every quiet snapshot where the kernel held the hidden closing state, netstat shows the state the
    packets show, with the kernel's as its `alt` (text: `CLOSE_WAIT?`)."""
    data = json.loads((MATRIX / f"{cell}.truth.json").read_text())
    host = data["hosts"][role]
    snaps = [s for s in data["snapshots"] if s.get("quiet", True) and not s.get("in_flight")
             and any(r["ns"] == role and r["state"] == truth for r in s["sockets"])]
    assert snaps, f"{cell}: no quiet snapshot with {truth} on the {role}"
    an = api.analyze(str(MATRIX / f"{cell}.pcap"))
    for s in snaps:
        rows = an.netstat(s["t"], host=host, listening=False).sockets
        got = [(r.state.value, r.alt.value if r.alt is not None else None) for r in rows]
        assert got == [shown], (s["t"], got)


def test_timeline_says_how_much_earlier():
    from tcpfsm.render.text import timeline_rows
    an = api.analyze(str(MATRIX / "fin_lost__middle__150ms__lost-before-tap.pcap"))
    reasons = [r[7] for r in timeline_rows(an.flows[0]) if r[1] == "server" and r[3] == "LAST_ACK"]
    assert len(reasons) == 1 and "may have happened up to 8.2" in reasons[0], reasons


def test_stuck_close_wait_finding_says_it_may_have_been_shorter():
    """The CLOSE_WAIT that a FIN with unseen first copies ended is reported with the shorter reading too."""
    an = api.analyze(str(MATRIX / "fin_lost__middle__150ms__lost-before-tap.pcap"),
                     thresholds={"stuck_close_wait": 5})
    found = [f for f in an.findings if f.kind == "stuck_close_wait"]
    assert found and all("it may have closed unseen" in f.message for f in found), [f.message for f in found]
    # the earliest it can have closed: right after its ACK of the client's FIN left it (tens of ms)
    assert "or for as little as " in found[0].message and " ms:" in found[0].message, found[0].message
