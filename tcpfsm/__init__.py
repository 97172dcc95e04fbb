"""tcpfsm: both endpoints' TCP state machines from a packet capture, and what went wrong.

    >>> import tcpfsm
    >>> an = tcpfsm.analyze("outage.pcap", profile="linux")
    >>> an.findings[0].message
    >>> an.netstat("+12.5s", host="10.0.0.9").sockets
    >>> an.states(interval=1.0)
    >>> tcpfsm.compiled()          # which hot-path kernels run compiled (TCPFSM_PURE=1: none)
    {'tcpfsm.capture._decode': True}
"""
from ._kernels import compiled
from .api import Analysis, Snapshot, Socket, analyze, parse_time

__all__ = ["analyze", "Analysis", "Snapshot", "Socket", "parse_time", "compiled"]
__version__ = "0.1.0"
