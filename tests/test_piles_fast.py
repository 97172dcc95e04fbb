"""The pile counter's fast bookkeeping (FIFO of stays, reused peak evidence) counts exactly as the plain
heap version it replaced, kept here as the reference, on random transition streams: in time order, and
with batches that step back in time (stream mode hands transitions out per batch)."""
from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

import pytest

from tcpfsm.detect.piles import LISTED, SAMPLE, Peak, PileCounter
from tcpfsm.fsm import State


class ReferencePileCounter:
    def __init__(self, min_age: float = 1.0):
        self.age = int(min_age * 1e9)
        self.live, self.stay, self.pending, self.peaks, self.sample, self.token = {}, {}, [], {}, {}, 0

    def _promote(self, upto):
        pend = self.pending
        while pend and pend[0][0] <= upto:
            due, token, fid, role, host, state = heapq.heappop(pend)
            cur = self.stay.get((fid, role))
            if cur is None or cur[1] != token:
                continue
            members = self.live.setdefault((host, state), set())
            members.add((fid, role))
            sample = self.sample.setdefault((host, state), [])
            if len(sample) < SAMPLE:
                sample.append(fid)
            peak = self.peaks.get((host, state))
            if peak is None or len(members) > peak.count:
                self.peaks[(host, state)] = Peak(len(members), due, sorted(set(sample)))

    def feed(self, items):
        pend = self.pending
        for flow, t in items:
            if pend and pend[0][0] < t.ts:
                self._promote(t.ts - 1)
            host = flow.client_raw if t.endpoint == "client" else flow.server_raw
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

    def finish(self, end):
        self._promote(end)
        return self.peaks


@dataclass
class F:
    id: int
    client_raw: str        # (the counter takes hosts as opaque keys: the flow's addresses as captured)
    server_raw: str


@dataclass
class T:
    ts: int
    endpoint: str
    new: State


def _stream(rng: random.Random, n: int, back_steps: bool, nhosts: int = 3):
    hosts = [f"10.0.0.{i}" for i in range(1, nhosts + 1)]
    flows = [F(i, rng.choice(hosts), rng.choice(hosts)) for i in range(1, 150)]
    states = [State.ESTABLISHED, State.TIME_WAIT, State.CLOSE_WAIT, State.CLOSED, State.FIN_WAIT_2]
    ts, batches, batch = 10**18, [], []
    for _ in range(n):
        ts += rng.choice([0, 0, 1, 10**6, 3 * 10**8, 2 * 10**9])
        at = ts - rng.randrange(0, 2 * 10**9) if back_steps and rng.random() < 0.05 else ts
        batch.append((rng.choice(flows), T(at, rng.choice(["client", "server"]), rng.choice(states))))
        if rng.random() < 0.02:
            batches.append(batch)
            batch = []
    batches.append(batch)
    return batches, ts


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("back_steps", [False, True])
def test_fast_pile_counter_counts_as_the_reference(seed, back_steps):
    rng = random.Random(seed)
    batches, end = _stream(rng, 3000, back_steps)
    fast, ref = PileCounter(min_age=rng.choice([0.0, 0.5, 1.0])), None
    ref = ReferencePileCounter(min_age=fast.age / 1e9)
    for b in batches:
        fast.feed(b)
        ref.feed(b)
    assert fast.finish(end + 10**10) == ref.finish(end + 10**10)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("keep_min", [2, 3])
def test_piles_of_one_count_as_the_reference_once_they_matter(seed, keep_min):
    """keep_min >= 2: a pile of one is kept aside (`lone`: a spoofed source's) and forgotten when it empties;
    one that grows is kept as every pile. Over many hosts (most piles one or two members), the piles that
    reach keep_min peak as the reference's, and every pile open at the end is reported."""
    rng = random.Random(seed)
    batches, end = _stream(rng, 3000, back_steps=seed % 2 == 1, nhosts=80)
    fast = PileCounter(min_age=rng.choice([0.0, 0.5, 1.0]), keep_min=keep_min)
    ref = ReferencePileCounter(min_age=fast.age / 1e9)
    for b in batches:
        fast.feed(b)
        ref.feed(b)
    got, want = fast.finish(end + 10**10), ref.finish(end + 10**10)
    assert {k: p for k, p in got.items() if p.count >= keep_min} == \
        {k: p for k, p in want.items() if p.count >= keep_min}
    assert sum(1 for p in want.values() if p.count >= keep_min) > 5
    still = {k for k, m in ref.live.items() if m}
    assert still <= set(got) and all(got[k] == want[k] for k in still if want[k].count >= keep_min)


@pytest.mark.parametrize("seed", range(10))
def test_a_counter_pickled_mid_stream_counts_on_as_the_original(seed):
    """Its stays waiting for min_age (`pending`, a ring of columns, and the heap of those due early) survive
    pickling: pickled between batches, it counts on as the counter never pickled (Dask moves counters)."""
    import pickle
    rng = random.Random(seed)
    batches, end = _stream(rng, 3000, back_steps=True, nhosts=10)
    whole, moved = PileCounter(min_age=1.0, keep_min=2), PileCounter(min_age=1.0, keep_min=2)
    for i, b in enumerate(batches):
        whole.feed(b)
        moved.feed(b)
        if i % 5 == 2:
            moved = pickle.loads(pickle.dumps(moved))
            assert list(moved.pending) == list(whole.pending) and moved.late == whole.late
    assert len(whole.pending) or whole.late
    assert moved.finish(end + 10**10) == whole.finish(end + 10**10)


@pytest.mark.parametrize("seed", range(6))
def test_thousands_waiting_for_a_long_min_age_count_as_the_reference(seed):
    """min_age far above the stream's steps: thousands of stays wait at once (the FIFO's ring grows past its
    first size, with stays due early in the heap beside it), and the counter still counts as the reference."""
    rng = random.Random(seed)
    batches, end = _stream(rng, 6000, back_steps=True, nhosts=20)
    fast = PileCounter(min_age=3000.0)
    ref = ReferencePileCounter(min_age=3000.0)
    most = 0
    for b in batches:
        fast.feed(b)
        ref.feed(b)
        most = max(most, len(fast.pending))
    assert most > 2048
    assert fast.finish(end + 10**13) == ref.finish(end + 10**13)


@pytest.mark.parametrize("form", ["tcpfsm.detect._piles", "tcpfsm.detect._piles_c"])
def test_the_fifo_of_waiting_stays_reads_as_a_deque_of_tuples(form):
    """`Pending` keeps its stays as columns and reads them back as the tuples a deque held, in order, across
    its ring's growth (both forms of the kernel)."""
    import importlib
    from collections import deque
    Pending = importlib.import_module(form).Pending
    states = [s for s in State if s in LISTED]
    p, want = Pending(), deque()
    for token in range(1, 5000):
        host, state = f"10.0.{token % 7}.1", states[token % len(states)]
        due, ep = 10**18 + token * 1000, token * 2 + token % 2
        p.push(due, token, ep, host, list(State).index(state))
        want.append((due, token, ep >> 1, ep, host, state))
    assert len(p) == len(want) and list(p) == list(want)
    assert list(Pending(want)) == list(want)


@pytest.mark.parametrize("seed", range(10))
def test_counters_of_disjoint_hosts_absorbed_count_as_one(seed):
    """A counter per host bucket, one absorbed into the other halfway (its stays still pending, moved by
    pickle as Dask moves them), the rest fed to the one left: the piles of one counter fed every transition."""
    import pickle
    rng = random.Random(seed)
    hosts = [f"10.0.{i}.1" for i in range(6)]
    states = [State.ESTABLISHED, State.TIME_WAIT, State.CLOSE_WAIT, State.CLOSED, State.SYN_SENT]
    flows = [F(i, *(lambda side: (rng.choice(hosts[side::2]), rng.choice(hosts[side::2])))(i % 2))
             for i in range(1, 120)]
    whole, even, odd = (PileCounter(min_age=1.0, keep_min=2) for _ in range(3))
    ts, items = 10**18, []
    for _ in range(3000):
        ts += rng.choice([0, 1, 10**6, 3 * 10**8])
        items.append((rng.choice(flows), T(ts, rng.choice(["client", "server"]), rng.choice(states))))
    for i in range(0, len(items), 50):
        batch = items[i:i + 50]
        whole.feed(batch)
        if i < len(items) // 2:
            even.feed([(f, t) for f, t in batch if f.id % 2 == 0])
            odd.feed([(f, t) for f, t in batch if f.id % 2 == 1])
            continue
        if odd is not None:             # (halfway: the other bucket's counter, its stays waiting, joins this one)
            assert len(odd.pending) >= 2
            even.absorb(pickle.loads(pickle.dumps(odd)))
            odd = None
        even.feed(batch)
    assert even.finish(ts + 10**10) == whole.finish(ts + 10**10)
