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


def _coarse(flow: Flow, role: str) -> int:
    ep = flow.conn.client if role == "client" else flow.conn.server
    if ep.rsts:
        return RESET
    if ep.fins:
        return CLOSED
    reached = any(t.endpoint == role and t.new in _DONE and not t.cause.startswith("inferred:midstream")
                  for t in flow.transitions)
    if reached:
        return ESTABLISHED
    if ep.synacks:
        return SYN_ACK_SENT
    if ep.syns:
        return SYN_SENT
    return PARTIAL if ep.packets else INACTIVE


def conn_state(flow: Flow) -> str:
    """Zeek's decision (one implementation: tcpfsm.zeek) over our flow's coarse endpoint states."""
    c, s = flow.conn.client, flow.conn.server
    return conn_state_of(_coarse(flow, "client"), _coarse(flow, "server"), c.payload, s.payload,
                         flow.conn.history)
