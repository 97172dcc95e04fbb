"""The endpoint state machines on their own: the table, the RFC graph, and `Connection` fed by hand.

The classic sequences below are fed straight to `tcpfsm.fsm.Connection` (no capture, no flow table):
client ISN 1000, server ISN 5000, one segment per millisecond. Property tests drive the same machine
with random segment sequences and check the invariants every output relies on: it never raises, each
endpoint's transitions chain, every state is an RFC state, and timers always drain TIME_WAIT.
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tcpfsm
from tcpfsm.fsm import TABLE, Connection, State, get_profile, is_rfc_edge, rfc_graph
from tcpfsm.fsm.machine import ACK, FIN, RST, SYN
from tcpfsm.fsm.table import RFC_EDGES

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
ALL_CAPTURES = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")
                      and "truncated" not in p.name)
MS = 1_000_000
S_ = 1_000_000_000
CISN, SISN = 1000, 5000
C, S = True, False          # from_client


class Wire:
    """Feeds hand-written segments to one Connection, numbering packets and advancing time 1 ms each."""

    def __init__(self, profile: str = "linux"):
        self.conn = Connection(get_profile(profile))
        self.ts = 0
        self.n = 0

    def send(self, from_client: bool, flags: int, seq: int, ack: int = 0, plen: int = 0, win: int = 65535,
             dt: int = MS) -> "Wire":
        self.ts += dt
        self.n += 1
        if self.n == 1:
            self.conn.start(self.ts, from_client, flags)
        self.conn.expire(self.ts)
        self.conn.feed(self.ts, self.n, from_client, flags, seq, ack, win, plen, -1, 40 + plen)
        return self

    @property
    def client(self) -> State:
        return self.conn.client.state

    @property
    def server(self) -> State:
        return self.conn.server.state

    def path(self, role: str) -> list[str]:
        return [f"{t.old.value}>{t.new.value}" for t in self.conn.transitions if t.endpoint == role]


def established() -> Wire:
    w = Wire()
    w.send(C, SYN, CISN)
    w.send(S, SYN | ACK, SISN, CISN + 1)
    w.send(C, ACK, CISN + 1, SISN + 1)
    return w


# -- the table and the graph ----------------------------------------------------------------------------

def test_every_table_entry_has_a_reason():
    entries = [(a, e, b, r) for a, row in TABLE.items() for e, (b, r) in row.items()]
    assert len(entries) > 40
    for a, e, b, reason in entries:
        assert isinstance(b, State), (a, e)
        assert isinstance(reason, str) and reason.strip(), f"{a.value} + {e.value} has no reason"


def test_table_has_a_row_for_every_state():
    assert set(TABLE) == set(State)


def test_rfc_graph_is_a_digraph_of_the_eleven_states():
    g = rfc_graph()
    assert isinstance(g, nx.DiGraph)
    assert set(g.nodes) == {s.value for s in State}
    assert len(g.nodes) == 11


def test_rfc_graph_marks_every_rfc_edge_rfc_true():
    g = rfc_graph()
    for a, b in RFC_EDGES:
        assert g.edges[a.value, b.value]["rfc"] is True, (a, b)
    for a, b in [("CLOSED", "SYN_SENT"), ("LISTEN", "SYN_RECEIVED"), ("FIN_WAIT_2", "TIME_WAIT"),
                 ("CLOSING", "TIME_WAIT"), ("LAST_ACK", "CLOSED"), ("TIME_WAIT", "CLOSED"),
                 ("ESTABLISHED", "CLOSED")]:
        assert g.edges[a, b]["rfc"] is True, (a, b)


def test_midstream_edge_closed_to_established_is_marked_non_rfc():
    d = rfc_graph().edges["CLOSED", "ESTABLISHED"]
    assert d["rfc"] is False
    assert d["event"] == "MIDSTREAM" and d["reason"]


def test_lost_handshake_ack_correction_established_to_syn_received_is_marked_non_rfc():
    d = rfc_graph().edges["ESTABLISHED", "SYN_RECEIVED"]
    assert d["rfc"] is False
    assert d["event"] == "SND_SYNACK"


def test_every_non_self_table_edge_is_in_the_graph():
    g = rfc_graph()
    for a, row in TABLE.items():
        for _, (b, _) in row.items():
            if a is not b:
                assert g.has_edge(a.value, b.value), (a, b)


def test_is_rfc_edge_agrees_with_the_graph_and_accepts_self_loops():
    g = rfc_graph()
    for a in State:
        assert is_rfc_edge(a, a)
        for b in State:
            if a is not b:
                assert is_rfc_edge(a, b) == bool(g.get_edge_data(a.value, b.value, {}).get("rfc")), (a, b)


# -- transitions on every capture -------------------------------------------------------------------------

_TABLE_PAIRS = {(a, b) for a, row in TABLE.items() for (b, _) in row.values()}


def _flows_of_every_capture():
    for p in ALL_CAPTURES:
        for f in tcpfsm.analyze(str(p)).flows:
            yield p, f


@pytest.fixture(scope="module")
def capture_flows():
    return list(_flows_of_every_capture())


def test_there_are_captures_to_check(capture_flows):
    assert len(ALL_CAPTURES) >= 40
    assert len(capture_flows) > 1000


def test_capture_transitions_chain_per_endpoint(capture_flows):
    for p, f in capture_flows:
        for role, ep in (("client", f.conn.client), ("server", f.conn.server)):
            ts = [t for t in f.transitions if t.endpoint == role]
            state, last = ep.initial, None
            for t in ts:
                assert t.old is state, f"{p.name} flow {f.id} {role}: {t.old}->{t.new} after {state}"
                assert last is None or t.ts >= last, f"{p.name} flow {f.id} {role}: time went back"
                state, last = t.new, t.ts
            assert state is ep.state, f"{p.name} flow {f.id} {role}"


def test_capture_transitions_are_table_entries_unless_inferred(capture_flows):
    for p, f in capture_flows:
        for t in f.transitions:
            if t.cause.startswith(("inferred:", "reused:")):
                continue
            assert (t.old, t.new) in _TABLE_PAIRS, f"{p.name} flow {f.id}: {t.old}->{t.new} ({t.cause})"


def test_capture_transitions_rfc_flag_agrees_with_is_rfc_edge(capture_flows):
    for p, f in capture_flows:
        for t in f.transitions:
            assert t.rfc == is_rfc_edge(t.old, t.new), f"{p.name} flow {f.id}: {t.old}->{t.new}"
            assert t.reason, f"{p.name} flow {f.id}: {t.old}->{t.new} has no reason"


# -- classic sequences fed to Connection -------------------------------------------------------------------

def test_three_way_handshake_makes_both_established():
    w = established()
    assert (w.client, w.server) == (State.ESTABLISHED, State.ESTABLISHED)
    assert w.path("client") == ["CLOSED>SYN_SENT", "SYN_SENT>ESTABLISHED"]
    assert w.path("server") == ["LISTEN>SYN_RECEIVED", "SYN_RECEIVED>ESTABLISHED"]


def test_client_closes_first_gives_client_time_wait_server_closed():
    w = established()
    w.send(C, FIN | ACK, CISN + 1, SISN + 1)
    w.send(S, ACK, SISN + 1, CISN + 2)
    w.send(S, FIN | ACK, SISN + 1, CISN + 2)
    w.send(C, ACK, CISN + 2, SISN + 2)
    assert (w.client, w.server) == (State.TIME_WAIT, State.CLOSED)
    assert w.path("client")[2:] == ["ESTABLISHED>FIN_WAIT_1", "FIN_WAIT_1>FIN_WAIT_2", "FIN_WAIT_2>TIME_WAIT"]
    assert w.path("server")[2:] == ["ESTABLISHED>CLOSE_WAIT", "CLOSE_WAIT>LAST_ACK", "LAST_ACK>CLOSED"]


def test_server_closes_first_gives_server_time_wait_client_closed():
    w = established()
    w.send(S, FIN | ACK, SISN + 1, CISN + 1)
    w.send(C, ACK, CISN + 1, SISN + 2)
    w.send(C, FIN | ACK, CISN + 1, SISN + 2)
    w.send(S, ACK, SISN + 2, CISN + 2)
    assert (w.client, w.server) == (State.CLOSED, State.TIME_WAIT)
    assert w.path("server")[2:] == ["ESTABLISHED>FIN_WAIT_1", "FIN_WAIT_1>FIN_WAIT_2", "FIN_WAIT_2>TIME_WAIT"]
    assert w.path("client")[2:] == ["ESTABLISHED>CLOSE_WAIT", "CLOSE_WAIT>LAST_ACK", "LAST_ACK>CLOSED"]


def test_simultaneous_close_first_acker_goes_closing_then_both_time_wait():
    # FINs cross; the server acknowledges the client's FIN first (the kernel capture simultaneous_close
    # shows the same: server FIN_WAIT_1 -> CLOSING, client FIN_WAIT_1 -> FIN_WAIT_2).
    w = established()
    w.send(C, FIN | ACK, CISN + 1, SISN + 1)
    w.send(S, FIN | ACK, SISN + 1, CISN + 1)
    assert (w.client, w.server) == (State.FIN_WAIT_1, State.FIN_WAIT_1)
    w.send(S, ACK, SISN + 2, CISN + 2)
    assert w.server is State.CLOSING
    w.send(C, ACK, CISN + 2, SISN + 2)
    assert (w.client, w.server) == (State.TIME_WAIT, State.TIME_WAIT)
    assert w.path("server")[2:] == ["ESTABLISHED>FIN_WAIT_1", "FIN_WAIT_1>CLOSING", "CLOSING>TIME_WAIT"]


def test_rst_in_established_closes_both():
    w = established()
    w.send(C, ACK, CISN + 1, SISN + 1, plen=100)
    w.send(S, RST | ACK, SISN + 1, CISN + 101)
    assert (w.client, w.server) == (State.CLOSED, State.CLOSED)
    assert w.conn.rst_by == "server" and w.conn.rst_state is State.ESTABLISHED
    assert not w.conn.violations


def test_out_of_window_rst_is_ignored_and_reported_as_violation():
    w = established()
    w.send(S, ACK, SISN + 1, CISN + 1)
    w.send(S, RST, (CISN + 1 + 0x70000000) & 0xFFFFFFFF, 0)
    assert (w.client, w.server) == (State.ESTABLISHED, State.ESTABLISHED)
    assert [v.kind for v in w.conn.violations] == ["out_of_window_rst"]
    assert w.conn.violations[0].endpoint == "server" and w.conn.violations[0].packet == 5


def test_rst_not_acknowledging_the_syn_does_not_close_syn_sent():
    w = Wire()
    w.send(C, SYN, CISN)
    w.send(S, RST | ACK, 0, CISN + 7)
    assert w.client is State.SYN_SENT
    assert [v.kind for v in w.conn.violations] == ["out_of_window_rst"]


def test_rst_answering_the_syn_refuses_the_connection():
    w = Wire()
    w.send(C, SYN, CISN)
    w.send(S, RST | ACK, 0, CISN + 1)
    assert (w.client, w.server) == (State.CLOSED, State.CLOSED)
    assert w.path("client") == ["CLOSED>SYN_SENT", "SYN_SENT>CLOSED"]


def test_retransmitted_syn_stays_syn_sent_with_one_transition():
    w = Wire()
    for _ in range(4):
        w.send(C, SYN, CISN, dt=S_)
    assert w.client is State.SYN_SENT
    assert w.path("client") == ["CLOSED>SYN_SENT"]
    assert w.conn.client.syns == 4
    assert not w.conn.violations


def test_unanswered_syn_times_out_to_closed_after_the_profile_syn_timeout():
    w = Wire()
    w.send(C, SYN, CISN)
    w.conn.expire(w.ts + int(134 * S_))
    assert w.client is State.SYN_SENT
    w.conn.expire(w.ts + int(135 * S_))
    assert w.client is State.CLOSED
    assert w.conn.transitions[-1].cause.startswith("timer:syn_retries")


def test_fin_receiver_does_not_move_until_its_ack_is_seen():
    w = established()
    w.send(C, FIN | ACK, CISN + 1, SISN + 1)
    assert w.server is State.ESTABLISHED      # the FIN might have been dropped after the capture point
    assert w.client is State.FIN_WAIT_1
    w.send(S, ACK, SISN + 1, CISN + 2)
    assert w.server is State.CLOSE_WAIT
    assert w.client is State.FIN_WAIT_2


def test_ack_not_covering_the_fin_does_not_move_the_fin_receiver():
    w = established()
    w.send(C, FIN | ACK, CISN + 1, SISN + 1)
    w.send(S, ACK, SISN + 1, CISN + 1)
    assert (w.client, w.server) == (State.FIN_WAIT_1, State.ESTABLISHED)


def test_time_wait_expires_after_profile_2msl():
    w = established()
    w.send(C, FIN | ACK, CISN + 1, SISN + 1)
    w.send(S, FIN | ACK, SISN + 1, CISN + 2)
    w.send(C, ACK, CISN + 2, SISN + 2)
    assert w.client is State.TIME_WAIT
    # 2MSL runs from when the server's FIN reached the client (the observer model's `at`): half the
    # client-side handshake gap after the tap saw it, before the client's ACK was seen
    tw = next(t for t in w.conn.transitions if t.new is State.TIME_WAIT)
    entered = tw.at
    assert tw.ts - MS < entered < tw.ts
    w.conn.expire(entered + 60 * S_ - 1)
    assert w.client is State.TIME_WAIT
    w.conn.expire(entered + 60 * S_)
    assert w.client is State.CLOSED
    t = w.conn.transitions[-1]
    assert (t.endpoint, t.old, t.new, t.ts, t.packet, t.cause) == (
        "client", State.TIME_WAIT, State.CLOSED, entered + 60 * S_, None, "timer:2MSL")


def test_retransmitted_fin_after_its_ack_undoes_last_ack_to_closed():
    w = established()
    w.send(S, FIN | ACK, SISN + 1, CISN + 1)
    w.send(C, ACK, CISN + 1, SISN + 2)
    w.send(C, FIN | ACK, CISN + 1, SISN + 2)
    w.send(S, ACK, SISN + 2, CISN + 2)
    assert w.client is State.CLOSED
    w.send(C, FIN | ACK, CISN + 1, SISN + 2, dt=200 * MS)     # the final ACK never reached it
    assert w.client is State.LAST_ACK
    assert w.conn.transitions[-1].rfc is False


def test_midstream_start_makes_both_established_by_non_rfc_edges():
    w = Wire()
    w.send(S, ACK, SISN, CISN, plen=100)
    assert (w.client, w.server) == (State.ESTABLISHED, State.ESTABLISHED)
    assert [(t.old, t.new, t.rfc, t.cause) for t in w.conn.transitions] == [
        (State.CLOSED, State.ESTABLISHED, False, "inferred:midstream")] * 2


# -- properties --------------------------------------------------------------------------------------------

FLAG_CHOICES = [SYN, SYN | ACK, ACK, ACK | 0x08, FIN | ACK, FIN, RST, RST | ACK, FIN | SYN, SYN | ACK | FIN, 0]

segment = st.tuples(
    st.booleans(),                                             # from client
    st.sampled_from(FLAG_CHOICES),
    st.integers(-3, 3000) | st.integers(0, 0xFFFFFFFF),         # seq offset from the sender's ISN (or any)
    st.integers(-3, 3000) | st.integers(0, 0xFFFFFFFF),         # ack offset from the receiver's ISN (or any)
    st.sampled_from([0, 0, 1, 100, 1460]),
    st.integers(0, 5 * S_),                                    # gap to the previous segment
    st.sampled_from([0, 502, 65535]),
)


def _run(segs, plain_fast_path: bool = False) -> Connection:
    conn = Connection(get_profile("linux"))
    ts = 1_767_225_600 * S_
    for i, (fc, flags, so, ao, plen, gap, win) in enumerate(segs, 1):
        ts += gap
        seq = (((CISN if fc else SISN) + so) & 0xFFFFFFFF) if so <= 3000 else so
        ack = (((SISN if fc else CISN) + ao) & 0xFFFFFFFF) if ao <= 3000 else ao
        if i == 1:
            conn.start(ts, fc, flags)
        if plain_fast_path and i > 1 and not flags & 7 and conn.steady:   # as FlowTable.feed_batch does
            conn.feed_plain(ts, fc, flags, seq, ack, win, plen, 40 + plen)
            continue
        conn.expire(ts)
        conn.feed(ts, i, fc, flags, seq, ack, win, plen, 7 if flags & SYN else -1, 40 + plen)
    return conn


def _check_chain(conn: Connection) -> None:
    for role, ep in (("client", conn.client), ("server", conn.server)):
        state, last = ep.initial, None
        for t in (t for t in conn.transitions if t.endpoint == role):
            assert t.old is state, (role, t.old, state)
            assert t.old is not t.new
            assert last is None or t.at >= last          # endpoint time never goes back
            state, last = t.new, t.at
        assert state is ep.state


PROPS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(st.lists(segment, min_size=1, max_size=25))
def test_random_segments_never_raise_and_transitions_chain(segs):
    conn = _run(segs)
    _check_chain(conn)


@PROPS
@given(st.lists(segment, min_size=1, max_size=25))
def test_random_segments_only_produce_rfc_states_and_table_edges(segs):
    conn = _run(segs)
    for t in conn.transitions:
        assert isinstance(t.new, State) and t.new in set(State)
        assert t.rfc == is_rfc_edge(t.old, t.new)
        if not t.cause.startswith("inferred:"):
            assert (t.old, t.new) in _TABLE_PAIRS, (t.old, t.new, t.cause)
    assert conn.client.state in set(State) and conn.server.state in set(State)


@PROPS
@given(st.lists(segment, min_size=1, max_size=25))
def test_after_expiring_far_in_the_future_nobody_is_in_time_wait(segs):
    conn = _run(segs)
    last = max((t.ts for t in conn.transitions), default=0)
    conn.expire(last + 10**6 * S_)
    assert conn.client.state is not State.TIME_WAIT
    assert conn.server.state is not State.TIME_WAIT
    _check_chain(conn)


@PROPS
@given(st.lists(segment, min_size=1, max_size=25))
# found by hypothesis: the server's FIN from before a reset and a new handshake is still unacknowledged when
# both ends are ESTABLISHED again, so a plain ACK moves the client to CLOSE_WAIT: not `steady`
@example([(False, 16, 0, 0, 0, 0, 0), (False, 17, 0, 0, 0, 0, 0), (True, 4, 0, 0, 0, 0, 0), (True, 2, 0, 0, 0, 0, 0),
          (True, 16, 0, 0, 0, 0, 0), (False, 2, 0, 0, 0, 0, 0), (True, 16, 0, 1, 0, 0, 0)])
def test_feed_plain_fast_path_agrees_with_feed_on_states(segs):
    ref = _run(segs)
    fast = _run(segs, plain_fast_path=True)
    assert (fast.client.state, fast.server.state) == (ref.client.state, ref.server.state)
    assert [(t.endpoint, t.old, t.new) for t in fast.transitions] == \
        [(t.endpoint, t.old, t.new) for t in ref.transitions]


# -- regressions (found by the properties above) ----------------------------------------------------------------------------------------------

def test_fin_rejected_as_invalid_is_not_a_fin_for_later_acks():
    w = Wire()
    w.send(C, SYN, CISN)
    w.send(C, SYN | FIN, CISN)                    # SYN+FIN from SYN_SENT: invalid_transition, no state change
    w.send(S, SYN | ACK, SISN, CISN + 1)
    w.send(C, ACK, CISN + 1, SISN + 1)
    assert [v.kind for v in w.conn.violations] == ["invalid_transition"]
    w.send(C, ACK, CISN + 1, SISN + 1, plen=100)
    w.send(S, ACK, SISN + 1, CISN + 101)          # acknowledges the data
    assert (w.client, w.server) == (State.ESTABLISHED, State.ESTABLISHED)


def _midstream_then_rst(fast_path: bool) -> Connection:
    conn = Connection(get_profile("linux"))
    segs = [(C, ACK, CISN, SISN), (S, ACK, SISN + 100_000, CISN), (S, RST, SISN + 100_000, 0)]
    for i, (fc, flags, seq, ack) in enumerate(segs, 1):
        ts = i * MS
        if i == 1:
            conn.start(ts, fc, flags)
        if fast_path and i > 1 and not flags & 7 and conn.steady:
            conn.feed_plain(ts, fc, flags, seq, ack, 65535, 0, 40)
        else:
            conn.expire(ts)
            conn.feed(ts, i, fc, flags, seq, ack, 65535, 0, -1, 40)
    return conn


def test_feed_plain_and_feed_judge_a_later_rst_the_same():
    ref, fast = _midstream_then_rst(False), _midstream_then_rst(True)
    assert (fast.client.state, fast.server.state, [v.kind for v in fast.violations]) == \
        (ref.client.state, ref.server.state, [v.kind for v in ref.violations])
