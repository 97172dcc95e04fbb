"""The transition table of one endpoint, as data, with the reason for every entry.

`TABLE[state][event] -> (next_state, reason)`. An event that has no entry for
the current state does not fit the RFC model; the machine reports it as an
`invalid_transition` and leaves the state alone. Self-loops are listed on
purpose: a retransmission is expected, not invalid.

`RFC_EDGES` is the state graph of RFC 9293 (Figure 5 plus the RST, ABORT and
USER TIMEOUT rules of section 3.10). `rfc_graph()` turns it into a networkx
DiGraph; transitions the table allows but the RFC graph lacks (observer
corrections, midstream inference) are marked `rfc=False` on every Transition.
"""
from __future__ import annotations

import networkx as nx

from .states import Event as E
from .states import State as S

_RST_IN = "reset by the peer (plausible RST received)"
_RST_OUT = "aborted: this endpoint sent a RST"

TABLE: dict[S, dict[E, tuple[S, str]]] = {
    S.CLOSED: {
        E.SND_SYN: (S.SYN_SENT, "active open: connect() sent a SYN"),
        E.MIDSTREAM: (S.ESTABLISHED, "picked up midstream: segments without a handshake, assumed established"),
        E.SND_RST: (S.CLOSED, "RST from an endpoint with no connection"),
        E.RCV_RST: (S.CLOSED, "RST to an endpoint with no connection is ignored"),
        E.RCV_ACK_OF_SYN: (S.CLOSED, "late segment to a closed endpoint"),
        E.RCV_ACK_OF_FIN: (S.CLOSED, "late ACK to a closed endpoint"),
        E.RCV_FIN: (S.CLOSED, "late FIN acknowledged by a closed endpoint"),
        # LAST_ACK -> CLOSED was decided on an ACK that, as the retransmitted FIN
        # proves, never reached this endpoint: undo it.
        E.SND_FIN: (S.LAST_ACK, "FIN retransmitted after the final ACK was seen: that ACK never arrived"),
    },
    S.LISTEN: {
        E.SND_SYNACK: (S.SYN_RECEIVED, "passive open: SYN received, SYN+ACK sent"),
        E.SND_RST: (S.CLOSED, "refused: RST answered the SYN (no listener on this port)"),
        E.SND_SYN: (S.SYN_SENT, "SYN sent from a listening endpoint"),
        E.RCV_RST: (S.LISTEN, "RST to a listener is ignored"),
    },
    S.SYN_SENT: {
        E.SND_SYN: (S.SYN_SENT, "SYN retransmitted: connect() still pending"),
        E.SND_SYNACK: (S.SYN_RECEIVED, "simultaneous open: the peer's SYN arrived in SYN_SENT, SYN+ACK sent"),
        E.RCV_ACK_OF_SYN: (S.SYN_SENT, "SYN+ACK seen; waiting for our ACK as evidence it arrived"),
        E.RCV_SYNACK: (S.ESTABLISHED, "SYN+ACK received and acknowledged: connect() returns"),
        E.RCV_RST: (S.CLOSED, "connection refused: RST answered our SYN"),
        E.SND_RST: (S.CLOSED, _RST_OUT),
        E.TIMEOUT: (S.CLOSED, "SYN retries exhausted: connect() timed out"),
    },
    S.SYN_RECEIVED: {
        E.SND_SYNACK: (S.SYN_RECEIVED, "SYN+ACK retransmitted: handshake ACK not received"),
        E.RCV_ACK_OF_SYN: (S.ESTABLISHED, "handshake ACK received: the connection is accepted"),
        E.RCV_SYNACK: (S.SYN_RECEIVED, "simultaneous open: the peer's SYN+ACK acknowledged, our SYN not yet"),
        E.SND_FIN: (S.FIN_WAIT_1, "closed before the handshake completed: FIN sent"),
        E.RCV_FIN: (S.CLOSE_WAIT, "peer's FIN received before its handshake ACK"),
        E.RCV_RST: (S.CLOSED, "RST received: the pending connection is dropped"),
        E.SND_RST: (S.CLOSED, _RST_OUT),
        E.TIMEOUT: (S.CLOSED, "SYN+ACK retries exhausted: half-open connection dropped"),
    },
    S.ESTABLISHED: {
        E.SND_FIN: (S.FIN_WAIT_1, "active close: FIN sent"),
        E.RCV_FIN: (S.CLOSE_WAIT, "passive close: the peer's FIN received and acknowledged"),
        E.RCV_ACK_OF_SYN: (S.ESTABLISHED, "handshake ACK repeated"),
        E.RCV_SYNACK: (S.ESTABLISHED, "SYN+ACK retransmission acknowledged again"),
        # The handshake ACK was seen on the wire but, as the retransmitted
        # SYN+ACK proves, lost before the server: undo ESTABLISHED.
        E.SND_SYNACK: (S.SYN_RECEIVED, "SYN+ACK retransmitted after the handshake ACK was seen: that ACK never arrived"),
        E.SND_SYN: (S.ESTABLISHED, "stale SYN retransmission after establishment, ignored"),
        E.RCV_RST: (S.CLOSED, _RST_IN),
        E.SND_RST: (S.CLOSED, _RST_OUT),
    },
    S.FIN_WAIT_1: {
        E.SND_FIN: (S.FIN_WAIT_1, "FIN retransmitted: not yet acknowledged"),
        E.RCV_ACK_OF_FIN: (S.FIN_WAIT_2, "our FIN acknowledged"),
        E.RCV_FIN: (S.CLOSING, "simultaneous close: the peer's FIN arrived before ours was acknowledged"),
        E.RCV_ACK_OF_SYN: (S.FIN_WAIT_1, "handshake ACK received after closing"),
        E.RCV_RST: (S.CLOSED, _RST_IN),
        E.SND_RST: (S.CLOSED, _RST_OUT),
        E.TIMEOUT: (S.CLOSED, "FIN retries exhausted: the peer never acknowledged our FIN"),
    },
    S.FIN_WAIT_2: {
        E.RCV_FIN: (S.TIME_WAIT, "the peer's FIN received and acknowledged: 2MSL wait starts"),
        E.SND_FIN: (S.FIN_WAIT_1, "FIN retransmitted after its ACK was seen: that ACK never arrived"),
        E.RCV_RST: (S.CLOSED, _RST_IN),
        E.SND_RST: (S.CLOSED, _RST_OUT),
        E.TIMEOUT: (S.CLOSED, "orphaned FIN_WAIT_2 timed out (fin_timeout)"),
    },
    S.CLOSE_WAIT: {
        E.SND_FIN: (S.LAST_ACK, "the application closed: FIN sent"),
        E.RCV_FIN: (S.CLOSE_WAIT, "the peer's FIN retransmission acknowledged again"),
        E.RCV_RST: (S.CLOSED, _RST_IN),
        E.SND_RST: (S.CLOSED, _RST_OUT),
    },
    S.CLOSING: {
        E.RCV_ACK_OF_FIN: (S.TIME_WAIT, "our FIN acknowledged in CLOSING: 2MSL wait starts"),
        E.SND_FIN: (S.CLOSING, "FIN retransmitted in CLOSING"),
        E.RCV_FIN: (S.CLOSING, "the peer's FIN retransmission acknowledged again"),
        E.RCV_RST: (S.CLOSED, _RST_IN),
        E.SND_RST: (S.CLOSED, _RST_OUT),
        E.TIMEOUT: (S.CLOSED, "FIN retries exhausted in CLOSING"),
    },
    S.LAST_ACK: {
        E.RCV_ACK_OF_FIN: (S.CLOSED, "final ACK received: the connection is gone"),
        E.SND_FIN: (S.LAST_ACK, "FIN retransmitted: final ACK not received"),
        E.RCV_FIN: (S.LAST_ACK, "the peer's FIN retransmission acknowledged again"),
        E.RCV_RST: (S.CLOSED, _RST_IN),
        E.SND_RST: (S.CLOSED, _RST_OUT),
        E.TIMEOUT: (S.CLOSED, "FIN retries exhausted: the peer vanished during the close"),
    },
    S.TIME_WAIT: {
        E.RCV_FIN: (S.TIME_WAIT, "the peer's FIN retransmitted (our last ACK was lost) and re-acknowledged: 2MSL restarts"),
        E.SND_FIN: (S.TIME_WAIT, "FIN retransmitted in TIME_WAIT"),
        E.RCV_ACK_OF_FIN: (S.TIME_WAIT, "duplicate ACK of our FIN"),
        E.RCV_RST: (S.CLOSED, "RST received in TIME_WAIT kills it (Linux tcp_rfc1337=0)"),
        E.SND_RST: (S.CLOSED, "TIME_WAIT answered a stray segment with RST and is gone"),
        E.TIMEOUT: (S.CLOSED, "2MSL expired"),
    },
}

# RFC 9293 state graph: Figure 5, plus section 3.10.7 (RST in synchronized
# states -> CLOSED), 3.10.5 (ABORT -> CLOSED) and 3.10.8 (USER TIMEOUT -> CLOSED).
_FIGURE_5 = [
    (S.CLOSED, S.LISTEN), (S.CLOSED, S.SYN_SENT), (S.LISTEN, S.SYN_RECEIVED), (S.LISTEN, S.SYN_SENT),
    (S.LISTEN, S.CLOSED), (S.SYN_SENT, S.SYN_RECEIVED), (S.SYN_SENT, S.ESTABLISHED), (S.SYN_SENT, S.CLOSED),
    (S.SYN_RECEIVED, S.ESTABLISHED), (S.SYN_RECEIVED, S.FIN_WAIT_1), (S.SYN_RECEIVED, S.LISTEN),
    (S.ESTABLISHED, S.FIN_WAIT_1), (S.ESTABLISHED, S.CLOSE_WAIT), (S.FIN_WAIT_1, S.FIN_WAIT_2),
    (S.FIN_WAIT_1, S.CLOSING), (S.FIN_WAIT_1, S.TIME_WAIT), (S.FIN_WAIT_2, S.TIME_WAIT),
    (S.CLOSING, S.TIME_WAIT), (S.CLOSE_WAIT, S.LAST_ACK), (S.LAST_ACK, S.CLOSED), (S.TIME_WAIT, S.CLOSED),
]
_TO_CLOSED = [(s, S.CLOSED) for s in S if s not in (S.CLOSED, S.LISTEN)]
RFC_EDGES: list[tuple[S, S]] = _FIGURE_5 + [e for e in _TO_CLOSED if e not in _FIGURE_5]


def rfc_graph() -> nx.DiGraph:
    """The RFC 9293 state graph, plus our table's extra edges marked rfc=False (for export)."""
    g = nx.DiGraph()
    g.add_nodes_from(s.value for s in S)
    for a, b in RFC_EDGES:
        g.add_edge(a.value, b.value, rfc=True)
    for a, row in TABLE.items():
        for event, (b, reason) in row.items():
            if a is not b and not g.has_edge(a.value, b.value):
                g.add_edge(a.value, b.value, rfc=False, event=event.value, reason=reason)
    return g


RFC_GRAPH = rfc_graph()


_RFC_PAIRS = frozenset((a, b) for a in S for b in S
                       if a is b or RFC_GRAPH.get_edge_data(a.value, b.value, {}).get("rfc"))


def is_rfc_edge(a: S, b: S) -> bool:
    """True for self-loops and for edges of the RFC graph (looked up in the networkx graph, once)."""
    return (a, b) in _RFC_PAIRS
