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


@pytest.mark.parametrize("seed", range(20))
def test_order_is_a_stable_sort_by_time_then_entering_then_endpoint(seed):
    """`order` (one sort by time, then each instant's items put in order among themselves: by insertion when
    few, by numpy when many) gives the order of a stable sort by (time, entering a listed state, endpoint),
    in both forms of the kernel, with instants shared by two items, by a few and by hundreds."""
    import importlib
    from tcpfsm.detect._piles import LISTED
    rng = random.Random(seed)
    flows = [F(i, bytes([i % 7]) * 16, bytes([i % 3]) * 16) for i in range(1, 60)]
    states = list(State)
    items, ts = [], 10**18
    for _ in range(rng.choice([1, 2, 50, 3000])):
        ts += rng.choice([0, 0, 0, 1, 10**6]) if rng.random() < 0.99 else 0
        if rng.random() < 0.002:         # (an instant many items share: a capture's end settling them all)
            items += [(rng.choice(flows), T(ts, rng.choice(["client", "server"]), rng.choice(states)))
                      for _ in range(rng.choice([30, 300]))]
        items.append((rng.choice(flows), T(ts - rng.choice([0, 0, 5]), rng.choice(["client", "server"]),
                                           rng.choice(states))))
    rng.shuffle(items)
    want = sorted(items, key=lambda ft: (ft[1].ts, ft[1].new in LISTED, ft[0].id * 2 + (ft[1].endpoint == "server")))
    for name in ("tcpfsm.detect._piles", "tcpfsm.detect._piles_c"):
        mod = importlib.import_module(name)
        got = mod.order(items)
        assert [id(x) for x in got] == [id(x) for x in want], name
        ts_col, ep_col, code_col = got.cols
        assert ts_col.tolist() == [t.ts for _, t in want]
        assert ep_col.tolist() == [f.id * 2 + (t.endpoint == "server") for f, t in want]


@pytest.mark.parametrize("seed", range(10))
def test_next_item_of_the_same_endpoint_is_found_as_by_a_stable_sort(seed):
    """`feed`'s look-ahead (`_next_same`: an open-addressing table, one backward pass) finds each item's next
    item with the same endpoint as a stable argsort of the endpoints does, in both forms of the kernel."""
    import importlib
    import numpy as np
    rng = random.Random(seed)
    for n in (0, 1, 2, 7, 300, 5000):
        pool = [rng.randrange(0, 2**41) * 2 + rng.randrange(2) for _ in range(max(1, n // rng.choice([1, 3, 50])))]
        eps = np.array([rng.choice(pool) for _ in range(n)], np.int64)
        want = np.full(n, -1, np.int64)
        if n > 1:
            by_ep = np.argsort(eps, kind="stable")
            same = eps[by_ep[1:]] == eps[by_ep[:-1]]
            want[by_ep[:-1][same]] = by_ep[1:][same]
        for name in ("tcpfsm.detect._piles", "tcpfsm.detect._piles_c"):
            assert importlib.import_module(name)._next_same(eps).tolist() == want.tolist(), (name, n)
