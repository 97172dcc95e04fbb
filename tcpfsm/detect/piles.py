"""How many endpoints each host holds in each state, followed transition by transition.

Owns the state piles: per (host, state) the live count, its peak and when,
and a sample of the flows holding it then. It consumes transitions in time
order (`FlowTable.drain()` hands them out that way when timers are advanced
with the capture clock), so it works the same on a whole capture and on a
stream whose finished connections are long gone: memory follows the
endpoints alive, not the packets.

An endpoint counts in a pile only once it has held the state for `min_age`
seconds, so a hundred FINs sent in one millisecond and acknowledged the next
do not make a FIN_WAIT_1 "pile".
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

from ..fsm import State
from ..fsm.machine import Transition
from ..track.flowtable import Flow

LISTED = frozenset(s for s in State if s not in (State.CLOSED, State.LISTEN))
SAMPLE = 100        # flow ids kept as evidence of a peak


@dataclass(slots=True)
class Peak:
    count: int
    ts: int                 # ns
    flows: list[int]        # up to SAMPLE flow ids holding the state at the peak


class PileCounter:
    def __init__(self, min_age: float = 1.0):
        self.age = int(min_age * 1e9)
        self.live: dict[tuple[str, State], set[int]] = {}      # counted stays: (host, state) -> flow ids
        self.stay: dict[tuple[int, str], tuple[State, int]] = {}  # (flow, role) -> (state, stay token)
        self.pending: list[tuple[int, int, int, str, str, State]] = []  # (due, token, flow, role, host, state)
        self.peaks: dict[tuple[str, State], Peak] = {}
        self.sample: dict[tuple[str, State], list[int]] = {}    # first members still in, for evidence
        self.token = 0

    def _promote(self, upto: int) -> None:
        pend = self.pending
        while pend and pend[0][0] <= upto:
            due, token, fid, role, host, state = heapq.heappop(pend)
            cur = self.stay.get((fid, role))
            if cur is None or cur[1] != token:
                continue                        # left the state before it counted
            members = self.live.setdefault((host, state), set())
            members.add((fid, role))
            sample = self.sample.setdefault((host, state), [])
            if len(sample) < SAMPLE:
                sample.append(fid)
            peak = self.peaks.get((host, state))
            if peak is None or len(members) > peak.count:
                self.peaks[(host, state)] = Peak(len(members), due, sorted(set(sample)))

    def feed(self, items: list[tuple[Flow, Transition]]) -> None:
        """Transitions in time order (leaving a state sorts before entering one at the same instant)."""
        pend = self.pending
        for flow, t in items:
            if pend and pend[0][0] < t.ts:
                self._promote(t.ts - 1)
            host = flow.client_ip if t.endpoint == "client" else flow.server_ip
            key = (flow.id, t.endpoint)
            cur = self.stay.pop(key, None)
            if cur is not None:
                members = self.live.get((host, cur[0]))
                if members is not None and key in members:
                    members.discard(key)
                    sample = self.sample[(host, cur[0])]
                    if flow.id in sample:
                        sample.remove(flow.id)
            if t.new in LISTED:
                self.token += 1
                self.stay[key] = (t.new, self.token)
                heapq.heappush(pend, (t.ts + self.age, self.token, flow.id, t.endpoint, host, t.new))
            if pend and pend[0][0] <= t.ts:
                self._promote(t.ts)

    def finish(self, end: int) -> dict[tuple[str, State], Peak]:
        """Stays still open at `end` count if they reached the minimum age by then."""
        self._promote(end)
        return self.peaks

    def forget(self, flow: Flow) -> None:
        """A finished flow leaves the table: it holds no listed state any more, drop its bookkeeping."""
        self.stay.pop((flow.id, "client"), None)
        self.stay.pop((flow.id, "server"), None)


def ordered(items: list[tuple[Flow, Transition]]) -> list[tuple[Flow, Transition]]:
    """Time order; at the same instant, leaving a listed state before entering one, then by flow and
    endpoint, so that a stream and a whole capture count in the same order."""
    return sorted(items, key=lambda ft: (ft[1].ts, ft[1].new in LISTED, ft[0].id, ft[1].endpoint))
