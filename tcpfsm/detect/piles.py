"""How many endpoints each host holds in each state, followed transition by transition.

Owns the state piles: per (host, state) the live count, its peak and when,
and a sample of the flows holding it then. It consumes transitions in time
order (`ordered` over `FlowTable.drain()`, with timers advanced with the
capture clock), so it works the same on a whole capture and on a
stream whose finished connections are long gone: memory follows the
endpoints alive, not the packets.

An endpoint counts in a pile only once it has held the state for `min_age`
seconds, so a hundred FINs sent in one millisecond and acknowledged the next
do not make a FIN_WAIT_1 "pile".

A host is its address as captured (the flow's 16-byte `client_raw` /
`server_raw`), not its text: a spoofed flood's million sources each pass
through here once, and their text is never needed. Whoever renders a pile
makes the text (`host_text`).
"""
from __future__ import annotations

from .._kernels import load
import numpy as np

from ..fsm import State, Transition, transition_columns
from ..track.flowtable import Flow, ip_text

# The counter itself is a compiled kernel (tcpfsm/detect/_piles.py, loaded by tcpfsm._kernels): its loops
# run once per transition of the run
_piles = load("tcpfsm.detect._piles")
PileCounter, Peak, LISTED, SAMPLE = _piles.PileCounter, _piles.Peak, _piles.LISTED, _piles.SAMPLE


def host_text(peaks: dict[tuple[bytes, State], Peak]) -> dict[tuple[str, State], Peak]:
    """Piles keyed by host address as text (what renderers and the API show), from the counter's keys."""
    return {(ip_text(h), st): p for (h, st), p in peaks.items()}


def ordered(items: list[tuple[Flow, Transition]]) -> list[tuple[Flow, Transition]]:
    """Time order; at the same instant, leaving a listed state before entering one, then by flow and
    endpoint, so that a stream and a whole capture count in the same order. (Their time, endpoint and state
    are read by the machine's kernel, which reaches a transition's C fields.)"""
    n = len(items)
    ts, endpoint, new = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    transition_columns(items, ts, endpoint, new)
    return _piles.order(items, (ts, endpoint, new))
