"""Zeek's conn_state for a connection, from its coarse per-endpoint states.

A first cut: Zeek's decision order (responder reset, originator reset, both
closed, one closed, S0, S1, OTH) over endpoint states derived from what each
endpoint sent. Orientation is ours (client = originator); Zeek's flip rules,
connection splitting and the full history alphabet (T, W, C, G, I, Q, ^) are
not modelled yet.
"""
from __future__ import annotations

from ..fsm import State
from ..track.flowtable import Flow

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
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
    os_, rs = _coarse(flow, "client"), _coarse(flow, "server")
    o_inactive = os_ in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    c, s = flow.conn.client, flow.conn.server
    if rs == RESET:
        if os_ in (SYN_SENT, SYN_ACK_SENT) or (os_ == RESET and not c.payload and not s.payload):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == RESET:
        if r_inactive:
            h = flow.conn.history
            return "RSTOS0" if h.startswith("S") and not any(x in h.split("R")[0] for x in "HAF") else "OTH"
        return "RSTO"
    if rs == CLOSED and os_ == CLOSED:
        return "SF"
    if os_ == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"
