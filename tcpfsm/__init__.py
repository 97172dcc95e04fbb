"""tcpfsm: both endpoints' TCP state machines from a packet capture, and what went wrong.

    >>> import tcpfsm
    >>> an = tcpfsm.analyze("outage.pcap", profile="linux")
    >>> an.findings[0].message
    >>> an.netstat("+12.5s", host="10.0.0.9").sockets
    >>> an.states(interval=1.0)
    >>> tcpfsm.compiled()          # which hot-path kernels run compiled (TCPFSM_PURE=1: none)
    {'tcpfsm.capture._decode': True}

The API (and numpy, networkx behind it) is imported on first use of these names, so that
`tcpfsm --version` and the command line's help stay fast.
"""
from ._kernels import compiled

__all__ = ["analyze", "Analysis", "Snapshot", "Socket", "parse_time", "compiled"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in __all__:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'tcpfsm' has no attribute {name!r}")
