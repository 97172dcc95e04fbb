"""Zeek's conn_state for a connection, from its coarse per-endpoint states.

The fast approximation used when Zeek's own tracker (tcpfsm.zeek, `--zeek`)
did not run: Zeek's decision function over endpoint states derived from what
each endpoint of *our* flow sent. Orientation and splitting are ours (client =
originator); `--zeek` gives Zeek's.

Owns what an endpoint's coarse state is here (`conn_state`'s doc); the read itself, once per record,
runs in the aggregator's compiled kernel (tcpfsm/detect/_tally.py: `zeek_coarse`, with the machine's
`entered_sides` reading the transitions), the decision in
tcpfsm.zeek (`conn_state_of`).
"""
from __future__ import annotations

from .._kernels import load
from ..fsm import State, entered_sides
from ..track.flowtable import Flow
from ..zeek.tracker import (CLOSED, ESTABLISHED, INACTIVE, PARTIAL, RESET, SYN_ACK_SENT, SYN_SENT,
                            conn_state_of)

_tally = load("tcpfsm.detect._tally")
# states at or past ESTABLISHED: an endpoint that entered one (not by a midstream pick-up) was established
_DONE = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING,
                   State.LAST_ACK, State.TIME_WAIT})
_DONE_MASK = sum(1 << k for k, st in enumerate(State) if st in _DONE)     # (their positions, for the machine)
_CODES = (INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET)
assert max(_CODES) < 16


def conn_state(flow: Flow) -> str:
    """Zeek's decision (one implementation: tcpfsm.zeek) over our flow's coarse endpoint states. An
    endpoint's coarse state, first that holds: RESET if it sent a RST, CLOSED if a FIN, ESTABLISHED if one
    of its transitions entered a state of `_DONE` (not inferred midstream), SYN_ACK_SENT if it sent a
    SYN+ACK, SYN_SENT if a SYN, PARTIAL if any packet, else INACTIVE."""
    conn = flow.conn
    both = _tally.zeek_coarse(conn, _DONE_MASK, _CODES, entered_sides)
    return conn_state_of(both >> 4, both & 15, conn.client.payload, conn.server.payload, conn.history)
