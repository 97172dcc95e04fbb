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

import heapq
from collections import deque
from dataclasses import dataclass

from ..fsm import State, Transition
from ..track.flowtable import Flow, ip_text

LISTED = frozenset(s for s in State if s not in (State.CLOSED, State.LISTEN))
SAMPLE = 100        # flow ids kept as evidence of a peak
# Stays are held by every endpoint of every tracked connection (ESTABLISHED is a pile too): they are kept
# as plain ints, an endpoint as `flow id * 2 + (role is server)` and its stay as `token * 16 + state code`,
# not as tuples (~80 bytes less per endpoint: 15 MB at 100,000 connections that never close)
_STATES = tuple(State)
_CODE = {st: i for i, st in enumerate(_STATES)}
assert len(_STATES) <= 16


@dataclass(slots=True)
class Peak:
    count: int
    ts: int                 # ns
    flows: list[int]        # up to SAMPLE flow ids holding the state at the peak


class PileCounter:
    def __init__(self, min_age: float = 1.0, keep_min: int = 1):
        """`keep_min`: the smallest pile that can matter (the lowest pile threshold). A (host, state) pile
        that empties without ever reaching it is forgotten entirely, so memory follows the piles that
        matter, not every host ever seen (a spoofed flood has a million one-SYN "hosts")."""
        self.age = int(min_age * 1e9)
        self.keep_min = keep_min
        self.released = 0       # endpoints let go of on eviction (see release)
        self.live: dict[tuple[bytes, State], set[int]] = {}    # counted stays: (host, state) -> endpoints
        # (host, state) -> endpoints counted there that left the table still holding it (`release`): they
        # count as members, without their identities (a stream's evicted connections would grow `live`)
        self.ghosts: dict[tuple[bytes, State], int] = {}
        self.stay: dict[int, int] = {}      # endpoint -> stay token * 16 + state code (see _STATES)
        # stays waiting for min_age, (due, token, flow, endpoint, host, state), popped in (due, token) order. Fed
        # in time order, dues only grow: those sit in a FIFO (O(1) both ends); a rare one due earlier than
        # the FIFO's last goes to a heap, and the smaller of the two heads is always the next.
        self.pending: deque[tuple[int, int, int, int, bytes, State]] = deque()
        self.late: list[tuple[int, int, int, int, bytes, State]] = []
        self.peaks: dict[tuple[bytes, State], Peak] = {}
        self.sample: dict[tuple[bytes, State], list[int]] = {}    # first members still in, for evidence
        self.token = 0
        # (host, state) -> the sorted sample of its last peak, while the sample has not changed since:
        # a pile that grows one member at a time would otherwise re-sort the same ids at every new peak
        self._evidence: dict[tuple[bytes, State], list[int]] = {}

    def _push(self, item: tuple) -> None:
        pend = self.pending
        if not pend or item >= pend[-1]:
            pend.append(item)
        else:
            heapq.heappush(self.late, item)

    def _promote(self, upto: int) -> None:
        pend, late, stay, live, samples, peaks, evidence = \
            self.pending, self.late, self.stay, self.live, self.sample, self.peaks, self._evidence
        popleft, heappop = pend.popleft, heapq.heappop
        while True:
            if late and (not pend or late[0] < pend[0]):
                if late[0][0] > upto:
                    break
                due, token, fid, ep, host, state = heappop(late)
            elif pend and pend[0][0] <= upto:
                due, token, fid, ep, host, state = popleft()
            else:
                break
            cur = stay.get(ep)
            if cur is None or cur >> 4 != token:
                continue                        # left the state before it counted
            key = (host, state)
            members = live.get(key)
            if members is None:
                # a new pile (a spoofed flood's every source): its first member is its peak and its evidence
                # (no ghosts, sample or peak can exist without the pile: `_leave` drops them together)
                live[key] = {ep}
                samples[key] = [fid]
                flows = evidence[key] = [fid]
                peaks[key] = Peak(1, due, flows)
                continue
            members.add(ep)
            sample = samples.get(key)
            if sample is None:
                sample = samples[key] = []
            if len(sample) < SAMPLE:
                sample.append(fid)
                evidence.pop(key, None)
            peak = peaks.get(key)
            count = len(members) + self.ghosts.get(key, 0)
            if peak is None or count > peak.count:
                flows = evidence.get(key)
                if flows is None:
                    flows = evidence[key] = sorted(set(sample))
                peaks[key] = Peak(count, due, flows)

    def feed(self, items: list[tuple[Flow, Transition]]) -> None:
        """Transitions in time order (leaving a state sorts before entering one at the same instant)."""
        pend, late, stay, live, samples, evidence, age = \
            self.pending, self.late, self.stay, self.live, self.sample, self._evidence, self.age
        listed, push = LISTED, self._push
        token = self.token
        for flow, t in items:
            ts = t.ts
            if (pend and pend[0][0] < ts) or (late and late[0][0] < ts):
                self._promote(ts - 1)
            fid = flow.id
            if t.endpoint == "client":
                host, ep = flow.client_raw, fid * 2
            else:
                host, ep = flow.server_raw, fid * 2 + 1
            cur = stay.pop(ep, None)
            if cur is not None:
                self._leave(host, _STATES[cur & 15], ep, fid)
            new = t.new
            if new in listed:
                token += 1
                stay[ep] = token << 4 | _CODE[new]
                item = (ts + age, token, fid, ep, host, new)
                if not pend or item >= pend[-1]:
                    pend.append(item)
                else:
                    push(item)
            if (pend and pend[0][0] <= ts) or (late and late[0][0] <= ts):
                self._promote(ts)
        self.token = token

    def _leave(self, host: bytes, state: State, key: int, fid: int) -> None:
        pile = (host, state)
        members = self.live.get(pile)
        if members is None or key not in members:
            return
        members.discard(key)
        sample = self.sample[pile]
        if fid in sample:
            sample.remove(fid)
            self._evidence.pop(pile, None)
        if not members and not self.ghosts.get(pile):
            peak = self.peaks.get(pile)
            if peak is None or peak.count < self.keep_min:
                del self.live[pile]
                self.sample.pop(pile, None)
                self._evidence.pop(pile, None)
                self.peaks.pop(pile, None)

    def release(self, flow: Flow) -> None:
        """`flow` leaves the table for good while holding a state (a half-open attempt evicted over the cap):
        no transition will ever take it out. An endpoint in a pile that is still below `keep_min` and never
        reached it is let go of (counted in `released`), so a million spoofed one-SYN sources cost nothing;
        one in a pile that matters stays in it, as in an uncapped run -- as a count (`ghosts`), its stay and
        identity dropped (its id may remain in the pile's evidence sample). Only a host whose pile reaches
        keep_min later, from members let go of, can count fewer than it held."""
        stay, live, peaks, ghosts, keep_min, fid = self.stay, self.live, self.peaks, self.ghosts, self.keep_min, flow.id
        for key, host in ((fid * 2, flow.client_raw), (fid * 2 + 1, flow.server_raw)):
            cur = stay.get(key)
            if cur is None:
                continue
            state = _STATES[cur & 15]
            pile = (host, state)
            members = live.get(pile)
            peak = peaks.get(pile)
            n = ghosts.get(pile, 0)
            if (members is None or len(members) + n < keep_min) and (peak is None or peak.count < keep_min):
                del stay[key]
                if not n and members is not None and len(members) == 1 and key in members:
                    # its own one-member pile (a spoofed source's), below keep_min: `_leave`'s outcome at once
                    del live[pile]
                    del self.sample[pile]
                    self._evidence.pop(pile, None)
                    peaks.pop(pile, None)
                else:
                    self._leave(host, state, key, fid)
                self.released += 1
            elif members is not None and key in members:     # counted: it stays counted, as a number
                del stay[key]
                members.discard(key)
                ghosts[pile] = n + 1
            # (not counted yet: still waiting for its minimum age; its stay is kept so that it will be)

    def absorb(self, other: "PileCounter") -> None:
        """Take in a counter fed the transitions of other hosts (tcpfsm.distributed replays the piles per
        host bucket): a pile is one host's, so counters of disjoint hosts join by union -- each host's counts,
        peaks and samples as one counter fed everything in the same order would have them."""
        for mine, theirs in ((self.live, other.live), (self.ghosts, other.ghosts), (self.stay, other.stay),
                             (self.peaks, other.peaks), (self.sample, other.sample),
                             (self._evidence, other._evidence)):
            mine.update(theirs)
        self.released += other.released
        for item in list(other.pending) + other.late:       # still waiting for their minimum age
            heapq.heappush(self.late, item)
        self.token = max(self.token, other.token)

    def finish(self, end: int) -> dict[tuple[bytes, State], Peak]:
        """Stays still open at `end` count if they reached the minimum age by then."""
        self._promote(end)
        return self.peaks


def host_text(peaks: dict[tuple[bytes, State], Peak]) -> dict[tuple[str, State], Peak]:
    """Piles keyed by host address as text (what renderers and the API show), from the counter's keys."""
    return {(ip_text(h), st): p for (h, st), p in peaks.items()}


def ordered(items: list[tuple[Flow, Transition]]) -> list[tuple[Flow, Transition]]:
    """Time order; at the same instant, leaving a listed state before entering one, then by flow and
    endpoint, so that a stream and a whole capture count in the same order."""
    listed = LISTED
    return sorted(items, key=lambda ft: (ft[1].ts, ft[1].new in listed, ft[0].id, ft[1].endpoint))
