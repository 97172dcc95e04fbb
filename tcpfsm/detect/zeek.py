"""Zeek's conn_state for a connection, from its coarse per-endpoint states.

The fast approximation used when Zeek's own tracker (tcpfsm.zeek, `--zeek`)
did not run: Zeek's decision function over endpoint states derived from what
each endpoint of *our* flow sent. Orientation and splitting are ours (client =
originator); `--zeek` gives Zeek's.
"""
from __future__ import annotations

from ..fsm import State
from ..track.flowtable import Flow
from ..zeek.tracker import (CLOSED, ESTABLISHED, INACTIVE, PARTIAL, RESET, SYN_ACK_SENT, SYN_SENT,
                            conn_state_of)

_DONE = {State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING,
         State.LAST_ACK, State.TIME_WAIT}


def _coarse(ep, role: str, transitions: list) -> int:
    """Zeek's state of endpoint `ep` (the flow's `role`), from its counters and, when they do not decide,
    its transitions (`Connection.transitions`)."""
    if ep.rsts:
        return RESET
    if ep.fins:
        return CLOSED
    for t in transitions:
        if t.endpoint == role and t.new in _DONE and not t.cause.startswith("inferred:midstream"):
            return ESTABLISHED
    if ep.synacks:
        return SYN_ACK_SENT
    if ep.syns:
        return SYN_SENT
    return PARTIAL if ep.packets else INACTIVE


def conn_state(flow: Flow) -> str:
    """Zeek's decision (one implementation: tcpfsm.zeek) over our flow's coarse endpoint states."""
    conn = flow.conn
    c, s = conn.client, conn.server
    return conn_state_of(_coarse(c, "client", conn.transitions), _coarse(s, "server", conn.transitions),
                         c.payload, s.payload, conn.history)
