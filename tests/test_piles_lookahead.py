"""`PileCounter.feed` skips the stays that end within its call before they could count (its look-ahead):
fed a stream in batches it counts exactly as fed one item a call (where no stay has a next item to look
ahead to), with the cap's `release` in between and the thresholds (`keep_min`) that forget small piles;
and fed `ordered`'s answer, whose columns it reads, as fed the same pairs as a plain list."""
from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from tcpfsm.detect.piles import PileCounter, ordered
from tcpfsm.fsm import State


@dataclass(eq=False)
class F:
    id: int
    client_raw: bytes
    server_raw: bytes


@dataclass
class T:
    ts: int
    endpoint: str
    new: State


def _state(p: PileCounter) -> tuple:
    return (dict(p.live), dict(p.ghosts), sorted(p.stay.items()), p.released, p.token, dict(p.lone),
            {k: (v.count, v.ts, v.flows) for k, v in p.peaks.items()})


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("via_order", [False, True])
def test_batched_feed_counts_as_one_item_a_call(seed, via_order):
    rng = random.Random(seed)
    hosts = [bytes([i]) * 16 for i in range(4)]
    flows = [F(i, rng.choice(hosts), rng.choice(hosts)) for i in range(1, 120)]
    states = list(State)
    min_age, keep_min = rng.choice([0.0, 0.001, 1.0]), rng.choice([1, 2, 3])
    batched, single = PileCounter(min_age, keep_min), PileCounter(min_age, keep_min)
    ts, batch = 10**18, []
    for _ in range(4000):
        ts += rng.choice([0, 0, 1, 10**6, 3 * 10**8, 2 * 10**9])
        at = ts - rng.randrange(0, 2 * 10**9) if rng.random() < 0.03 else ts     # (a stream's step back)
        batch.append((rng.choice(flows), T(at, rng.choice(["client", "server"]), rng.choice(states))))
        if rng.random() < 0.03:
            if via_order:
                batch = ordered(batch)
            batched.feed(batch)
            for item in batch:
                single.feed([item])
            batch = []
            gone = rng.sample(flows, 3)           # evicted over the cap, between batches (api.hand_out)
            batched.release_all(gone)
            single.release_all(gone)
            assert _state(batched) == _state(single)
    if via_order:
        batch = ordered(batch)
    batched.feed(batch)
    for item in batch:
        single.feed([item])
    end = ts + 10**10
    assert batched.finish(end) == single.finish(end)
    assert _state(batched) == _state(single)
