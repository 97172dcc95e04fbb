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
        E.INFER_SYN: (S.SYN_SENT, "inferred: a SYN+ACK came first, so this endpoint had sent a SYN we missed"),
        E.INFER_SYNACK: (S.SYN_RECEIVED, "inferred: the client acknowledged a SYN+ACK we did not capture"),
        # The ICMP error that closed SYN_SENT never ended connect(), as the same SYN sent again proves (Linux
        # keeps only a soft error when the ICMP arrives while the socket is busy: TcpExtLockDroppedIcmps).
        E.SND_SYN_AFTER_ICMP: (S.SYN_SENT, "SYN retransmitted after an ICMP error: the error did not end connect()"),
    },
    S.LISTEN: {
        E.SND_SYNACK: (S.SYN_RECEIVED, "passive open: SYN received, SYN+ACK sent"),
        E.SND_RST: (S.CLOSED, "refused: RST answered the SYN (no listener on this port)"),
        E.SND_SYN: (S.SYN_SENT, "SYN sent from a listening endpoint"),
        E.RCV_RST: (S.LISTEN, "RST to a listener is ignored"),
        E.INFER_SYNACK: (S.SYN_RECEIVED, "inferred: the client acknowledged a SYN+ACK we did not capture"),
        E.RCV_ACK_OF_SYN: (S.ESTABLISHED, "a SYN cookie came back valid: the connection is created established"),
    },
    S.SYN_SENT: {
        E.SND_SYN: (S.SYN_SENT, "SYN retransmitted: connect() still pending"),
        E.SND_SYNACK: (S.SYN_RECEIVED, "simultaneous open: the peer's SYN arrived in SYN_SENT, SYN+ACK sent"),
        E.RCV_ACK_OF_SYN: (S.SYN_SENT, "SYN+ACK seen; waiting for our ACK as evidence it arrived"),
        E.RCV_SYNACK: (S.ESTABLISHED, "SYN+ACK received and acknowledged: connect() returns"),
        E.RCV_RST: (S.CLOSED, "connection refused: RST answered our SYN"),
        E.SND_RST: (S.CLOSED, _RST_OUT),
        E.TIMEOUT: (S.CLOSED, "SYN retries exhausted: connect() timed out"),
        E.INFER_SYNCED: (S.ESTABLISHED, "inferred: the peer acknowledged our data, so our SYN+ACK had arrived"),
        # Linux tcp_v4_err / tcp_v6_err: in SYN_SENT every ICMP error that maps to an errno ends the socket
        # (tcp_done), soft ones (net/host unreachable, time exceeded) too; only an established connection
        # keeps retrying on soft errors (RFC 1122 4.2.3.9). Fragmentation needed / packet too big only lower
        # the path MTU and are not this event.
        E.RCV_ICMP_ERROR: (S.CLOSED, "connect() failed: an ICMP error (unreachable, prohibited or time exceeded) "
                                     "answered our SYN"),
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
        E.INFER_SYNCED: (S.ESTABLISHED, "inferred: the peer's data arrived and was acknowledged, so its handshake ACK had too"),
        # A listener that keeps a request retransmits its SYN+ACK (Linux: after 1 s); one answered with a SYN
        # cookie (its queue full, tcp_syncookies) keeps nothing, so it never retransmits.
        E.COOKIE: (S.LISTEN, "SYN cookie: the SYN+ACK was never retransmitted, so no request was kept"),
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
        E.REUSED: (S.CLOSED, "a new SYN on the 4-tuple was accepted: TIME_WAIT ends early (time_wait_reuse)"),
    },
}

# Per-state timers, as netfilter keeps its timeouts: state -> (TimerProfile field, cause). The timer starts
# when the endpoint entered the state (SYN_SENT: at the first SYN), and on expiry the table's TIMEOUT entry
# of that state applies. FIN_WAIT_2 is timed only while orphaned (after close(), not shutdown()).
TIMEOUTS: dict[S, tuple[str, str]] = {
    S.SYN_SENT: ("syn_sent_timeout", "timer:syn_retries"),
    S.SYN_RECEIVED: ("syn_recv_timeout", "timer:synack_retries"),
    S.FIN_WAIT_1: ("fin_wait_1_timeout", "timer:orphan_retries"),
    S.FIN_WAIT_2: ("fin_timeout", "timer:fin_timeout"),
    S.CLOSING: ("closing_timeout", "timer:orphan_retries"),
    S.LAST_ACK: ("last_ack_timeout", "timer:orphan_retries"),
    S.TIME_WAIT: ("time_wait", "timer:2MSL"),
}

# Table entries that correct an earlier move: the event proves that the segment which caused the endpoint's
# previous transition never reached it. The pair is kept in the history and marked retracted, so that the
# state the endpoint really held is what netstat shows for that span.
UNDOES: frozenset[tuple[S, E]] = frozenset({
    (S.CLOSED, E.SND_FIN), (S.FIN_WAIT_2, E.SND_FIN), (S.ESTABLISHED, E.SND_SYNACK), (S.SYN_RECEIVED, E.COOKIE),
    (S.CLOSED, E.SND_SYN_AFTER_ICMP),
})

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


def rfc_graph():
    """The RFC 9293 state graph as a networkx DiGraph, plus our table's extra edges marked rfc=False (for
    export). networkx is imported here, not at module load: the engine itself needs only `is_rfc_edge`."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(s.value for s in S)
    for a, b in RFC_EDGES:
        g.add_edge(a.value, b.value, rfc=True)
    for a, row in TABLE.items():
        for event, (b, reason) in row.items():
            if a is not b and not g.has_edge(a.value, b.value):
                g.add_edge(a.value, b.value, rfc=False, event=event.value, reason=reason)
    return g


_RFC_PAIRS = frozenset(RFC_EDGES) | frozenset((s, s) for s in S)


def is_rfc_edge(a: S, b: S) -> bool:
    """True for self-loops and for edges of the RFC graph."""
    return (a, b) in _RFC_PAIRS


def __getattr__(name: str):
    if name == "RFC_GRAPH":          # built on first use (networkx costs ~0.1 s of start-up)
        g = globals()["RFC_GRAPH"] = rfc_graph()
        return g
    raise AttributeError(name)
