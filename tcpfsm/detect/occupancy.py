"""Which endpoint was in which state when: the intervals behind netstat snapshots, state counts and piles.

Owns the conversion of per-flow transition lists into per-endpoint state
intervals, snapshots at given instants and state counts per host over time.
It reads finished flows only; it decides no state.
"""
from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass

from ..fsm import State
from ..track.flowtable import Flow, hostport

# States a host's `netstat -nat` lists for a connection (CLOSED never; LISTEN is the listener's, not a flow's).
LISTED = frozenset(s for s in State if s not in (State.CLOSED, State.LISTEN))


@dataclass(slots=True)
class Interval:
    flow: int
    role: str
    host: str
    local: str
    remote: str
    state: State
    start: int          # ns, endpoint time (the observer model's `at`)
    end: int | None     # ns, None = still in this state with no timer pending
    alt: State | None = None   # the state it may have been in instead (the packets cannot decide)


def intervals(flow: Flow) -> list[Interval]:
    """Every state each endpoint of `flow` held that netstat would list (or that it may have held instead,
    `alt`), on the endpoints' clock, including a timer pending past the capture's end. Transitions that
    later evidence retracted (the segment never reached the endpoint) are skipped: the endpoint held its
    state all along."""
    out: list[Interval] = []
    conn = flow.conn
    for role, ep, ip, local, remote in (
            ("client", conn.client, flow.client_ip, flow.client, flow.server),
            ("server", conn.server, flow.server_ip, flow.server, flow.client)):
        state, start, alt = ep.initial, flow.first_ts, None
        for t in conn.transitions:
            if t.endpoint != role or t.retracted:
                continue
            stop = t.at
            if t.alt_before is not None and alt is None and start < t.alt_before[0] < stop:
                split, maybe = t.alt_before           # the change may already have happened from `split` on
                if state in LISTED or maybe in LISTED:
                    out.append(Interval(flow.id, role, ip, local, remote, state, split, stop, maybe))
                stop = split
            if state in LISTED or alt in LISTED:
                out.append(Interval(flow.id, role, ip, local, remote, state, start, stop, alt))
            state, start, alt = t.new, t.at, t.alt
        pend = conn.pending(ep)
        end = pend[0] if pend else None
        if ep.alt is not None and alt is None and ep.alt_at > start:
            if state in LISTED:
                out.append(Interval(flow.id, role, ip, local, remote, state, start, ep.alt_at))
            start, alt = ep.alt_at, ep.alt
        if state in LISTED or alt in LISTED:
            out.append(Interval(flow.id, role, ip, local, remote, state, start, end, alt))
    return out


class Occupancy:
    """All intervals of a capture, indexed for instant lookups and sweeps."""

    def __init__(self, flows: list[Flow]):
        self.items: list[Interval] = [iv for f in flows for iv in intervals(f)]
        self.items.sort(key=lambda iv: iv.start)
        self.starts = [iv.start for iv in self.items]
        # listeners inferred from answered SYNs: (host, local) -> first time seen
        self.listeners: dict[tuple[str, str], int] = {}
        for f in flows:
            if f.conn.server.synacks and not f.role_inferred or f.conn.server.initial is State.LISTEN \
                    and f.conn.server.synacks:
                k = (f.server_ip, f.server)
                self.listeners[k] = min(self.listeners.get(k, f.first_ts), f.first_ts)

    def at(self, t: int, host: str | None = None) -> list[Interval]:
        """Intervals covering instant t (start <= t < end)."""
        hi = bisect.bisect_right(self.starts, t)
        return [iv for iv in self.items[:hi]
                if (iv.end is None or t < iv.end) and (host is None or iv.host == host)]

    def listening(self, host: str | None = None) -> list[tuple[str, str]]:
        return sorted(k for k in self.listeners if host is None or k[0] == host)

    def counts(self, t0: int, t1: int, step: int, host: str | None = None,
               keep=None) -> list[tuple[int, dict[str, Counter]]]:
        """State counts per host at t0, t0+step, ... <= t1 (what `netstat -nat | uniq -c` shows each tick).
        `keep(local, remote, state)`: count only the intervals it accepts (port and state filters)."""
        deltas: list[tuple[int, int, str, State]] = []
        for iv in self.items:
            if host is not None and iv.host != host:
                continue
            if keep is not None and not keep(iv.local, iv.remote, iv.state):
                continue
            deltas.append((iv.start, 1, iv.host, iv.state))
            if iv.end is not None:
                deltas.append((iv.end, -1, iv.host, iv.state))
        deltas.sort(key=lambda d: (d[0], d[1]))
        live: dict[str, Counter] = defaultdict(Counter)
        out = []
        i, n = 0, len(deltas)
        t = t0
        while t <= t1:
            while i < n and deltas[i][0] <= t:
                _, d, h, s = deltas[i]
                live[h][s] += d
                i += 1
            out.append((t, {h: Counter({s: c for s, c in cnt.items() if c}) for h, cnt in live.items()
                            if any(cnt.values())}))
            t += step
        return out

    def peaks(self, min_age: float = 0.0, end: int | None = None) -> dict[tuple[str, State], tuple[int, int, list[int]]]:
        """Per (host, state): (peak count, time of the peak, flows holding it then), counting an endpoint only
        once it has held the state for `min_age` seconds, so that a hundred FINs sent in the same millisecond
        and acknowledged the next do not make a FIN_WAIT_1 "pile". Stays are clipped at `end`."""
        age = int(min_age * 1e9)
        deltas = []
        for k, iv in enumerate(self.items):
            stop = iv.end if end is None or iv.end is None else min(iv.end, end)
            if stop is None:
                stop = end
            start = iv.start + age
            if stop is not None and stop <= start:
                continue
            deltas.append((start, 1, k))
            if stop is not None:
                deltas.append((stop, -1, k))
        deltas.sort(key=lambda d: (d[0], d[1]))
        live: Counter = Counter()
        best: dict[tuple[str, State], tuple[int, int]] = {}
        for t, d, k in deltas:
            iv = self.items[k]
            key = (iv.host, iv.state)
            live[key] += d
            if d > 0 and live[key] > best.get(key, (0, 0))[0]:
                best[key] = (live[key], t)
        out = {}
        for key, (count, t) in best.items():
            flows = sorted({iv.flow for iv in self.at(t, key[0]) if iv.state is key[1] and iv.start + age <= t})
            out[key] = (count, t, flows)
        return out


def listener_row(host: str, local: str) -> tuple[str, str]:
    wildcard = "[::]:*" if ":" in host else "0.0.0.0:*"
    return local, wildcard


__all__ = ["Interval", "Occupancy", "intervals", "LISTED", "hostport", "listener_row"]
