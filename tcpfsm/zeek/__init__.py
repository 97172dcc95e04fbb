"""Zeek's view of TCP connections: its own splitting, orientation, conn_state and history.

Zeek (the network monitor) cuts and orients connections differently from tcpfsm's
flows, so this package runs its own small tracker over the same columnar batches
and produces one `ZeekConn` per line Zeek would write to conn.log.

    from tcpfsm.zeek import ZeekTracker, zeek_summary_for_flows
    zt = ZeekTracker()
    for batch in capture.batches(): zt.feed_batch(batch)
    conns = zt.finish()
"""
from .tracker import ZeekConn, ZeekTracker, conn_state_of, zeek_conns, zeek_summary_for_flows, LIKELY_SERVER_PORTS

__all__ = ["ZeekConn", "ZeekTracker", "conn_state_of", "zeek_conns", "zeek_summary_for_flows",
           "LIKELY_SERVER_PORTS"]
