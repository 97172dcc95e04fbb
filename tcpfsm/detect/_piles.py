"""The pile counter's kernel: `PileCounter` and its `Peak`, compiled (a Cython pure-Python-mode module).

Owns the bookkeeping of the state piles, transition by transition; `tcpfsm.detect.piles` owns what a pile
is (its module doc: min_age, hosts as captured), the order transitions come in (`ordered`) and the text of
hosts. Must not: import tcpfsm's other modules but the states (the counter takes flows and transitions by
their attributes: `id`, `client_raw`, `server_raw`; `ts`, `endpoint`, `new`), render anything, or read a
clock.

Compiled, the counter is an extension type whose counters and clock are C integers, and whose per-transition
work (`feed`, `_promote`, `_leave`) runs without Python frames; its containers are the same dicts, `Stays`
table and `Pending` ring as uncompiled (numpy columns compiled, lists uncompiled), so both forms count identically (tests/test_piles_fast.py compares them with a
reference) and a counter pickles (Dask moves the per-bucket counters back to the driver: `absorb`).
"""
from __future__ import annotations

import heapq

import cython
import numpy as np

from ..fsm.states import State

i64 = cython.typedef(cython.longlong)

SAMPLE = 100        # flow ids kept as evidence of a peak
LISTED = frozenset(s for s in State if s not in (State.CLOSED, State.LISTEN))
_STATES = tuple(State)      # a stay's state code is its index here
assert len(_STATES) <= 16
_CODE = {st: i for i, st in enumerate(_STATES) if st in LISTED}     # listed State -> its code
_LISTED_CODE = np.array([i if st in LISTED else -1 for i, st in enumerate(_STATES)], np.int64)   # by position
_NONE = cython.declare(i64, 0x7FFFFFFFFFFFFFFF)      # `_next_due` when no stay waits


_EMPTY = cython.declare(i64, -0x7FFFFFFFFFFFFFFF - 1)    # `Stays`: a free slot's key
_DEAD = cython.declare(i64, -0x7FFFFFFFFFFFFFFF)         # `Stays`: a deleted entry's key (probes go on past it)
_FIB = cython.declare(cython.ulonglong, 0x9E3779B97F4A7C15)     # 2**64 / golden ratio: Fibonacci hashing
_MIN_SLOTS = cython.declare(i64, 1024)


def _ints(a):
    """A numpy int64 column as the counter's loops read it: itself compiled, a list of ints uncompiled."""
    if cython.compiled:
        return a
    return a.tolist()


@cython.boundscheck(False)
@cython.wraparound(False)
def _columns(items: list) -> tuple:
    """(time, endpoint, state code) of each (flow, transition) pair, as int64 arrays: the endpoint is `flow id *
    2 + (role is server)`, the code the entered state's index in `_STATES`, -1 when it is not listed. What
    `order` sorts by and `feed` reads: one pass over the items' attributes, made once for both (`Ordered`)."""
    n: i64 = len(items)
    ts = np.empty(n, np.int64)
    endpoint = np.empty(n, np.int64)
    code = np.empty(n, np.int64)
    tv: i64[::1] = ts
    pv: i64[::1] = endpoint
    cv: i64[::1] = code
    codes: dict = _CODE
    i: i64
    fid2: i64 = 0
    prev = None
    for i in range(n):      # (bounded: one turn an item)
        f, t = items[i]
        tv[i] = t.ts
        if f is not prev:   # (a flow's transitions come together: FlowTable.drain)
            prev = f
            fid2 = f.id * 2
        pv[i] = fid2 + (0 if t.endpoint == "client" else 1)
        got = codes.get(t.new)
        cv[i] = -1 if got is None else got
    return ts, endpoint, code


@cython.boundscheck(False)
@cython.wraparound(False)
def _next_same(eps) -> object:
    """Of each item, the index of the next item with the same endpoint in `eps` (an int64 column of endpoints,
    each >= 0), -1 when none: one backward pass over an open-addressing table of the endpoints seen (linear
    probing, Fibonacci hashing, as `Stays`), endpoint -> the latest index seen. (A stable argsort of the
    endpoints and four fancy-indexing passes gave the same, at ~3 times the instructions.)"""
    n: i64 = len(eps)
    after = np.full(n, -1, np.int64)
    slots: i64 = 16
    shift: i64 = 60
    while slots < 2 * n:        # (bounded: 64 turns at most)
        slots *= 2
        shift -= 1
    mask: i64 = slots - 1
    keys = np.full(slots, _EMPTY, np.int64)
    latest = np.zeros(slots, np.int64)
    ev: i64[::1] = _ints(eps)
    av: i64[::1] = after            # (uncompiled: the array itself, written item by item)
    kv: i64[::1] = _ints(keys)
    lv: i64[::1] = _ints(latest)
    i: i64
    j: i64
    key: i64
    u: cython.ulonglong
    for i in range(n - 1, -1, -1):      # (bounded: one turn an item)
        key = ev[i]
        if cython.compiled:
            u = cython.cast(cython.ulonglong, key) * _FIB         # (wraps: unsigned)
        else:
            u = (key * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        j = u >> shift
        while kv[j] != key and kv[j] != _EMPTY:       # (bounded: the table is at most half full)
            j = (j + 1) & mask
        if kv[j] == key:
            av[i] = lv[j]
        else:
            kv[j] = key
        lv[j] = i
    return after


class Ordered(list):
    """`order`'s answer: the pairs in the counter's order, with their `_columns` in that order (`cols`), so
    that `PileCounter.feed` does not read the same attributes again. A plain list of pairs is fed as well."""

    __slots__ = ("cols",)


@cython.final
@cython.cclass
class Stays:
    """The counter's stays, endpoint -> stay (both int64; a stay is >= 0): one entry per endpoint of every
    tracked connection, so kept as an open-addressing table (linear probing, Fibonacci hashing) over two int64
    arrays, 21 to 64 bytes an endpoint, not as a dict of int objects (a dict entry and two ints: ~120 to 170
    bytes; ~20 MB per 100,000 connections that never close). The dict calls the counter makes, with -1 for
    "none": `get`, `pop`, `put` (d[k] = v), `discard` (del d[k]); `len`, `items` and `update` as a dict's.
    The table is rebuilt when live and deleted entries fill three quarters of it, to twice the live ones."""

    _keys = cython.declare(cython.longlong[::1])
    _vals = cython.declare(cython.longlong[::1])
    _used = cython.declare(i64)            # live entries
    _filled = cython.declare(i64)          # live and deleted entries
    _shift = cython.declare(i64)           # 64 - log2(slots): a hash's top bits are its slot
    _mask = cython.declare(i64)            # slots - 1

    def __init__(self, items=()):
        self._alloc(_MIN_SLOTS)
        for k, v in items:
            self.put(k, v)

    @cython.cfunc
    def _alloc(self, slots: i64) -> cython.void:
        """An empty table of `slots` (a power of two) slots."""
        if cython.compiled:
            self._keys = np.full(slots, _EMPTY, np.int64)
            self._vals = np.zeros(slots, np.int64)
        else:                   # (uncompiled: lists of Python ints, which read back as ints)
            self._keys = [_EMPTY] * slots
            self._vals = [0] * slots
        self._used = self._filled = 0
        self._mask = slots - 1
        n: i64 = 1
        self._shift = 64
        while n < slots:        # (bounded: 64 turns at most)
            n *= 2
            self._shift -= 1

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _find(self, key: i64) -> i64:
        """The slot holding `key`; else -1 - the slot it would go to (the first deleted one on its probe, or
        the free one that ends it)."""
        u: cython.ulonglong
        if cython.compiled:
            u = cython.cast(cython.ulonglong, key) * _FIB         # (wraps: unsigned)
        else:
            u = (key * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        i: i64 = u >> self._shift
        free: i64 = -1
        k: i64
        while True:     # (bounded: the table is never full)
            k = self._keys[i]
            if k == key:
                return i
            if k == _EMPTY:
                return -1 - (free if free >= 0 else i)
            if k == _DEAD and free < 0:
                free = i
            i = (i + 1) & self._mask

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def get(self, key: i64) -> i64:
        """The stay of `key`, -1 when it has none."""
        i: i64 = self._find(key)
        return self._vals[i] if i >= 0 else -1

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def pop(self, key: i64) -> i64:
        """The stay of `key`, removed; -1 when it had none."""
        i: i64 = self._find(key)
        if i < 0:
            return -1
        self._keys[i] = _DEAD
        self._used -= 1
        return self._vals[i]

    @cython.ccall
    def discard(self, key: i64) -> cython.void:
        self.pop(key)

    @cython.cfunc
    @cython.inline
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _drop(self, i: i64) -> cython.void:
        """Delete the entry at slot `i` (as `_find` gave it, no `put` since): `pop` without a second probe."""
        self._keys[i] = _DEAD
        self._used -= 1

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def put(self, key: i64, value: i64) -> cython.void:
        i: i64 = self._find(key)
        if i >= 0:
            self._vals[i] = value
            return
        i = -1 - i
        if self._keys[i] == _EMPTY:
            self._filled += 1
        self._keys[i] = key
        self._vals[i] = value
        self._used += 1
        if self._filled * 4 >= (self._mask + 1) * 3:
            self._rebuild()

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _rebuild(self) -> cython.void:
        keys: cython.longlong[::1] = self._keys
        vals: cython.longlong[::1] = self._vals
        n: i64 = self._mask + 1
        slots: i64 = _MIN_SLOTS
        while slots < 2 * self._used:
            slots *= 2
        self._alloc(slots)
        i: i64
        for i in range(n):      # (bounded: the old table's slots)
            if keys[i] != _EMPTY and keys[i] != _DEAD:
                self.put(keys[i], vals[i])

    def __len__(self) -> int:
        return self._used

    def items(self) -> list:
        """(endpoint, stay) pairs, in no particular order."""
        out = []
        i: i64
        for i in range(self._mask + 1):     # (bounded: the slots)
            if self._keys[i] != _EMPTY and self._keys[i] != _DEAD:
                out.append((int(self._keys[i]), int(self._vals[i])))
        return out

    def update(self, other) -> None:
        """Add the pairs of `other` (a Stays of either form, or a dict)."""
        for k, v in other.items():
            self.put(k, v)

    def __reduce__(self):
        return (Stays, (self.items(),))


@cython.final
@cython.cclass
class Peak:
    """A pile's peak: most endpoints held at once, when (ns), and up to SAMPLE flow ids holding the state
    then. (A compiled class, not a dataclass: a spoofed flood makes one per source, and a dataclass's
    __init__ is Python code.)"""

    count = cython.declare(i64, visibility="public")
    ts = cython.declare(i64, visibility="public")
    flows = cython.declare(list, visibility="public")

    def __init__(self, count: int, ts: int, flows: list):
        self.count = count
        self.ts = ts
        self.flows = flows

    def __eq__(self, other):
        if not isinstance(other, Peak):
            return NotImplemented
        return (self.count, self.ts, self.flows) == (other.count, other.ts, other.flows)

    __hash__ = None

    def __repr__(self) -> str:
        return f"Peak(count={self.count!r}, ts={self.ts!r}, flows={self.flows!r})"

    def __reduce__(self):
        return (Peak, (self.count, self.ts, self.flows))


@cython.final
@cython.cclass
class Pending:
    """The counter's stays waiting for min_age in the order they were queued, a FIFO of (due, token, flow,
    endpoint, host, state) read as a deque of those tuples (`len`, iteration; `push` appends), kept as a ring of
    columns (due, token and endpoint as C integers, the flow its endpoint // 2, the state its code): a spoofed
    flood queues one stay a source, and a tuple of six with four ints of its own was five allocations each.
    `PileCounter` reads its head column by column (`_due`, `_token`, ...) and drops it (`_drop_head`)."""

    _due = cython.declare(cython.longlong[::1])
    _token = cython.declare(cython.longlong[::1])
    _ep = cython.declare(cython.longlong[::1])
    _code = cython.declare(cython.longlong[::1])
    _host = cython.declare(list)
    _head = cython.declare(i64)             # sequence number of the oldest
    _tail = cython.declare(i64)             # next sequence number
    _mask = cython.declare(i64)             # ring size - 1 (a power of two)

    def __init__(self, items=()):
        self._head = self._tail = 0
        self._alloc(1024)
        for due, token, _fid, ep, host, state in items:
            self.push(due, token, ep, host, _STATES.index(state))

    @cython.cfunc
    def _alloc(self, size: i64) -> cython.void:
        self._host = [None] * size
        if cython.compiled:
            self._due = np.zeros(size, np.int64)
            self._token = np.zeros(size, np.int64)
            self._ep = np.zeros(size, np.int64)
            self._code = np.zeros(size, np.int64)
        else:                   # (uncompiled: lists of Python ints)
            self._due = [0] * size
            self._token = [0] * size
            self._ep = [0] * size
            self._code = [0] * size
        self._mask = size - 1

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _grow(self) -> cython.void:
        due, token, ep, code, host = self._due, self._token, self._ep, self._code, self._host
        old: i64 = self._mask
        self._alloc((old + 1) * 2)
        seq: i64
        for seq in range(self._head, self._tail):       # (bounded: the old ring's slots)
            self._due[seq & self._mask] = due[seq & old]
            self._token[seq & self._mask] = token[seq & old]
            self._ep[seq & self._mask] = ep[seq & old]
            self._code[seq & self._mask] = code[seq & old]
            self._host[seq & self._mask] = host[seq & old]

    def __len__(self) -> int:
        return self._tail - self._head

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def push(self, due: i64, token: i64, ep: i64, host, code: i64) -> cython.void:
        """Queue a stay last."""
        if self._tail - self._head > self._mask:
            self._grow()
        i: i64 = self._tail & self._mask
        self._due[i] = due
        self._token[i] = token
        self._ep[i] = ep
        self._code[i] = code
        self._host[i] = host
        self._tail += 1

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _item(self, seq: i64) -> tuple:
        """The stay `seq` as the tuple a deque of them would hold."""
        i: i64 = seq & self._mask
        return (self._due[i], self._token[i], self._ep[i] >> 1, self._ep[i], self._host[i], _STATES[self._code[i]])

    @cython.cfunc
    def _head_item(self) -> tuple:
        return self._item(self._head)

    @cython.cfunc
    def _last_item(self) -> tuple:
        return self._item(self._tail - 1)

    @cython.cfunc
    @cython.inline
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _head_due(self) -> i64:
        return self._due[self._head & self._mask]

    @cython.cfunc
    @cython.inline
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _last_due(self) -> i64:
        return self._due[(self._tail - 1) & self._mask]

    @cython.cfunc
    @cython.inline
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _last_token(self) -> i64:
        return self._token[(self._tail - 1) & self._mask]

    @cython.cfunc
    @cython.inline
    def _drop_head(self) -> cython.void:
        self._host[self._head & self._mask] = None
        self._head += 1

    def __iter__(self):
        seq: i64
        for seq in range(self._head, self._tail):       # (bounded)
            yield self._item(seq)

    def __reduce__(self):
        return (Pending, (list(self),))


@cython.cfunc
def _late_first(head: tuple, pend: Pending) -> cython.bint:
    """The heap's head `head` comes before the FIFO's (as their tuples compare; the FIFO not empty)."""
    due: i64 = head[0]
    pdue: i64 = pend._head_due()
    if due != pdue:
        return due < pdue
    token: i64 = head[1]
    ptoken: i64 = pend._token[pend._head & pend._mask]
    if token != ptoken:
        return token < ptoken
    return head < pend._head_item()        # (one token in both: only after `absorb`)


@cython.final
@cython.cclass
class PileCounter:
    """How many endpoints each host holds in each state (see tcpfsm.detect.piles).

    Stays are held by every endpoint of every tracked connection (ESTABLISHED is a pile too): they are kept as
    plain ints, an endpoint as `flow id * 2 + (role is server)` and its stay as `token * 32 + counted * 16 +
    state code` (the state's index in `_STATES`), not as tuples (~80 bytes less per endpoint: 15 MB at
    100,000 connections that never close). Counted: the endpoint is a member of its pile (it reached
    min_age), so that leaving a stay that never counted (most of them) looks at no pile. The counted bit is
    the membership: a pile keeps only how many members it has (`live`), not a set of them (~85 bytes less per
    endpoint)."""

    age = cython.declare(i64, visibility="public")             # ns: min_age
    keep_min = cython.declare(i64, visibility="public")
    released = cython.declare(i64, visibility="public")        # endpoints let go of on eviction (see release)
    token = cython.declare(i64, visibility="public")
    _states = cython.declare(tuple)     # `_STATES`, held for the loops (no global lookup)
    live = cython.declare(dict, visibility="public")
    ghosts = cython.declare(dict, visibility="public")
    stay = cython.declare(Stays, visibility="public")
    pending = cython.declare(Pending, visibility="public")
    late = cython.declare(list, visibility="public")
    peaks = cython.declare(dict, visibility="public")
    sample = cython.declare(dict, visibility="public")
    _evidence = cython.declare(dict, visibility="readonly")     # (readable by `absorb` of the other form)
    lone = cython.declare(dict, visibility="public")
    _singles = cython.declare(cython.bint)

    def __init__(self, min_age: float = 1.0, keep_min: int = 1):
        """`keep_min`: the smallest pile that can matter (the lowest pile threshold). A (host, state) pile
        that empties without ever reaching it is forgotten entirely, so memory follows the piles that matter,
        not every host ever seen (a spoofed flood has a million one-SYN "hosts")."""
        self._states = _STATES
        self.age = int(min_age * 1e9)
        self.keep_min = keep_min
        self.released = 0
        self.token = 0
        # (host, state) -> how many endpoints are counted there (their stays' counted bit); a pile of one in
        # `lone` is not here until its second member (or `finish`)
        self.live = {}
        # (host, state) -> endpoints counted there that left the table still holding it (`release`): they
        # count as members, without their identities (a stream's evicted connections would grow `live`)
        self.ghosts = {}
        self.stay = Stays()     # endpoint -> stay token * 32 + counted * 16 + state code
        # stays waiting for min_age, (due, token, flow, endpoint, host, state), popped in (due, token) order. Fed
        # in time order, dues only grow: those sit in a FIFO (`Pending`, O(1) both ends); a rare one due earlier
        # than the FIFO's last goes to a heap of those tuples, and the smaller of the two heads is always the next.
        self.pending = Pending()
        self.late = []
        self.peaks = {}
        self.sample = {}    # (host, state) -> first members still in, for evidence
        # (host, state) -> the sorted sample of its last peak, while the sample has not changed since:
        # a pile that grows one member at a time would otherwise re-sort the same ids at every new peak
        self._evidence = {}
        # (host, state) -> (flow id, since): a pile of one member so far -- a spoofed flood's every source --
        # kept as this pair instead of its count in `live`, sample, evidence and peak (made from it when a second
        # member comes, or at `finish`): one dict entry made and dropped a source. Only when keep_min >= 2: such
        # a pile then cannot matter while it has one member.
        self.lone = {}
        self._singles = keep_min >= 2

    @cython.cfunc
    def _next_due(self) -> i64:
        """The due time of the next pending stay; _NONE when none waits."""
        pend: Pending = self.pending
        late = self.late
        due: i64
        if late:
            due = late[0][0]
            if len(pend) and pend._head_due() < due:        # (the smaller head's due; equal dues: either)
                return pend._head_due()
            return due
        if len(pend):
            return pend._head_due()
        return _NONE

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def _promote(self, upto: i64):
        stay: Stays = self.stay
        pend: Pending = self.pending
        late, live, samples, peaks, evidence, ghosts, states = \
            self.late, self.live, self.sample, self.peaks, self._evidence, self.ghosts, self._states
        due: i64
        token: i64
        count: i64
        cur: i64
        slot: i64
        i: i64
        ep: i64
        fid: i64
        pk: Peak
        while True:     # (bounded: each turn pops one pending stay)
            if late and (not len(pend) or _late_first(late[0], pend)):
                due = late[0][0]
                if due > upto:
                    break
                _, token, fid, ep, host, state = heapq.heappop(late)
            elif len(pend):
                due = pend._head_due()
                if due > upto:
                    break
                i = pend._head & pend._mask
                token = pend._token[i]
                ep = pend._ep[i]
                fid = ep >> 1
                host = pend._host[i]
                state = states[pend._code[i]]
                pend._drop_head()
            else:
                break
            slot = stay._find(ep)             # (one probe for the read and the write)
            if slot < 0:
                continue                        # left the state before it counted
            cur = stay._vals[slot]
            if (cur >> 5) != token:
                continue
            stay._vals[slot] = cur | 16         # counted
            key = (host, state)
            members = live.get(key)
            if members is None:
                if self._singles:
                    pair = (fid, due)
                    first = self.lone.setdefault(key, pair)     # (one probe, whether a pile of one or not)
                    if first is pair:
                        continue                # a new pile (a spoofed flood's every source): a pile of one
                    del self.lone[key]          # its second member: the pile as every pile is kept, then as any
                    self._unfold(key, first)
                    members = 1
                else:
                    # a new pile: its first member is its peak and its evidence (no ghosts, sample or peak can
                    # exist without the pile: `_leave` drops them together)
                    live[key] = 1
                    samples[key] = [fid]
                    flows = [fid]
                    evidence[key] = flows
                    peaks[key] = Peak(1, due, flows)
                    continue
            count = members
            count += 1
            live[key] = count
            sample = samples.get(key)
            if sample is None:
                sample = []
                samples[key] = sample
            if len(sample) < SAMPLE:
                sample.append(fid)
                evidence.pop(key, None)
            got = peaks.get(key)
            if ghosts:                          # (none but after evictions over the cap: no lookup)
                count += ghosts.get(key, 0)
            if got is None or count > cython.cast(Peak, got).count:
                flows = evidence.get(key)
                if flows is None:
                    flows = sorted(set(sample))
                    evidence[key] = flows
                if got is None:
                    peaks[key] = Peak(count, due, flows)
                else:       # (a new peak: the pile's Peak rewritten, not replaced: nothing reads one before `finish`)
                    pk = cython.cast(Peak, got)
                    pk.count = count
                    pk.ts = due
                    pk.flows = flows

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def feed(self, items) -> None:
        """(flow, transition) pairs in time order (leaving a state sorts before entering one at the same
        instant): `order`'s answer, whose columns it reads, or any list of pairs.

        Most stays end within the call that began them, long before min_age (a handshake's, a close's): one
        pass reads the items into columns and finds each endpoint's next item in the call, and a stay that
        ends before it could count -- every promotion until its endpoint's next transition is up to a time
        before its due -- is neither stored nor made pending: the counter would have stored it, queued it and
        dropped it unseen (`_promote` skips a stay that ended). What stays and queues is what can count."""
        pairs: list
        if type(items) is Ordered and len(items.cols[0]) == len(items):
            cols = items.cols
            # (read as the list it is: a list subclass's items are looked up through `__getitem__`, 60 ns each)
            pairs = cython.cast(list, items)
        else:
            pairs = items if type(items) is list else list(items)
            cols = _columns(pairs)
        n: i64 = len(pairs)
        stay: Stays = self.stay
        pend: Pending = self.pending
        late, states = self.late, self._states
        age: i64 = self.age
        token: i64 = self.token
        ts: i64
        ep: i64
        cur: i64
        c: i64
        i: i64
        d: i64
        times, eps, codes = cols
        # each item's endpoint's next item in this call (-1: none)
        after = _next_same(eps)
        # stored: it enters a listed state and no promotion before its endpoint's next item here can reach its
        # due (the latest time up to that item is before it: items may step back in time in a stream)
        reach = np.maximum.accumulate(times) if n else times
        stored = (codes >= 0) & ((after < 0) | (reach[after] >= times + age))
        # bare: its endpoint holds no stay when it comes (its previous item here stored none)
        bare = np.zeros(n, np.int64)
        bare[after[~stored & (after >= 0)]] = 1
        tsv: i64[::1] = _ints(times)
        epv: i64[::1] = _ints(eps)
        codev: i64[::1] = _ints(codes)
        storedv: i64[::1] = _ints(stored.astype(np.int64))
        barev: i64[::1] = _ints(bare)
        due: i64 = self._next_due()
        for i in range(n):                  # (bounded: one turn an item)
            ts = tsv[i]
            if due < ts:
                self._promote(ts - 1)
                due = self._next_due()
            ep = epv[i]
            if not barev[i]:
                cur = stay.pop(ep)
                if cur >= 0 and cur & 16:       # counted: it leaves its pile
                    flow = pairs[i][0]
                    self._leave(flow.server_raw if ep & 1 else flow.client_raw, states[cur & 15], ep, ep >> 1)
            c = codev[i]
            if c < 0:
                pass
            elif storedv[i]:
                token += 1
                flow = pairs[i][0]
                stay.put(ep, token << 5 | c)
                d = ts + age
                host = flow.server_raw if ep & 1 else flow.client_raw
                # last in the FIFO when it does not sort before the FIFO's last (as their tuples compare)
                if not len(pend) or d > pend._last_due() or (d == pend._last_due() and (
                        token > pend._last_token() or (token == pend._last_token() and (
                            (d, token, ep >> 1, ep, host, states[c]) >= pend._last_item())))):
                    pend.push(d, token, ep, host, c)
                else:
                    heapq.heappush(late, (d, token, ep >> 1, ep, host, states[c]))
                if ts + age < due:
                    due = self._next_due()
            else:
                token += 1                      # (a stay too short to count: its token spent all the same)
            if due <= ts:
                self._promote(ts)
                due = self._next_due()
        self.token = token

    @cython.cfunc
    def _unfold(self, key, first) -> cython.void:
        """A pile of one (`lone`) as every pile is kept: its member its sample, evidence and peak."""
        fid, since = first
        flows = [fid]
        self.sample[key] = [fid]
        self._evidence[key] = flows
        self.peaks[key] = Peak(1, since, flows)

    @cython.cfunc
    def _leave(self, host, state, key, fid) -> cython.void:
        """A counted endpoint (`key`) leaves its pile."""
        pile = (host, state)
        if self.lone and self.lone.pop(pile, None) is not None:
            return                              # its only member, below keep_min: forgotten
        got = self.live.get(pile)
        if got is None:
            return
        members: i64 = got
        members -= 1
        self.live[pile] = members
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

    def release_all(self, flows: list) -> None:
        """`release` each of `flows`."""
        for flow in flows:                  # (bounded: one turn a flow)
            self.release(flow)

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def release(self, flow) -> None:
        """`flow` leaves the table for good while holding a state (a half-open attempt evicted over the cap):
        no transition will ever take it out. An endpoint in a pile that is still below `keep_min` and never
        reached it is let go of (counted in `released`), so a million spoofed one-SYN sources cost nothing;
        one in a pile that matters stays in it, as in an uncapped run -- as a count (`ghosts`), its stay and
        identity dropped (its id may remain in the pile's evidence sample). Only a host whose pile reaches
        keep_min later, from members let go of, can count fewer than it held."""
        stay: Stays = self.stay
        live, peaks, ghosts, states = self.live, self.peaks, self.ghosts, self._states
        keep_min: i64 = self.keep_min
        fid: i64 = flow.id
        n: i64
        cur: i64
        m: i64
        key: i64
        side: i64
        slot: i64
        counted: cython.bint
        for side in range(2):                   # (two endpoints: the client's, the server's)
            key = fid * 2 + side
            slot = stay._find(key)              # (the slot: dropped below without a second probe)
            if slot < 0:
                continue
            cur = stay._vals[slot]
            host = flow.server_raw if side else flow.client_raw
            counted = (cur & 16) != 0           # (a member of its pile)
            state = states[cur & 15]
            pile = (host, state)
            if counted and self.lone and self.lone.pop(pile, None) is not None:
                # its own pile of one (a spoofed source's; not in `live`, no ghosts, sample or peak), below
                # keep_min: let go of
                stay._drop(slot)
                self.released += 1
                continue
            members = live.get(pile)
            m = 0 if members is None else members
            peak = peaks.get(pile)
            n = ghosts.get(pile, 0)
            if (members is None or m + n < keep_min) and (peak is None or peak.count < keep_min):
                stay._drop(slot)
                if not n and members is not None and m == 1 and counted:
                    # its own one-member pile, below keep_min: `_leave`'s outcome at once
                    del live[pile]
                    del self.sample[pile]
                    self._evidence.pop(pile, None)
                    peaks.pop(pile, None)
                elif counted:
                    self._leave(host, state, key, fid)
                self.released += 1
            elif members is not None and counted:     # counted: it stays counted, as a number
                stay._drop(slot)
                live[pile] = m - 1
                ghosts[pile] = n + 1
            # (not counted yet: still waiting for its minimum age; its stay is kept so that it will be)

    def absorb(self, other) -> None:
        """Take in a counter fed the transitions of other hosts (tcpfsm.distributed replays the piles per
        host bucket): a pile is one host's, so counters of disjoint hosts join by union -- each host's counts,
        peaks and samples as one counter fed everything in the same order would have them. `other` may be
        of the other form (a worker that runs the uncompiled kernel): it is read by its attributes."""
        self.live.update(other.live)
        self.ghosts.update(other.ghosts)
        self.stay.update(other.stay)
        self.peaks.update(other.peaks)
        self.sample.update(other.sample)
        self._evidence.update(other._evidence)
        self.lone.update(other.lone)
        self.released += other.released
        for item in list(other.pending) + other.late:       # still waiting for their minimum age
            heapq.heappush(self.late, item)
        self.token = max(self.token, other.token)

    def finish(self, end: int) -> dict:
        """Stays still open at `end` count if they reached the minimum age by then."""
        self._promote(end)
        for key, first in self.lone.items():     # (bounded: one turn a pile of one)
            self._unfold(key, first)
            self.live[key] = 1
        self.lone.clear()
        return self.peaks


_SMALL_TIE = cython.declare(i64, 24)     # `order`: items at one instant sorted in place up to this many


@cython.cfunc
@cython.inline
def _before(entering_a: cython.bint, ep_a: i64, a: i64, entering_b: cython.bint, ep_b: i64, b: i64) -> cython.bint:
    """At one instant, item a (at index `a` of the items) sorts strictly before item b: leaving a listed state
    before entering one, then by endpoint, then in the items' order."""
    if entering_a != entering_b:
        return entering_b
    if ep_a != ep_b:
        return ep_a < ep_b
    return a < b


@cython.boundscheck(False)
@cython.wraparound(False)
def order(items: list, read=None) -> "Ordered":
    """`items`, (flow, transition) pairs, in the order the counter takes them (`tcpfsm.detect.piles.ordered`):
    time; at the same instant, leaving a listed state before entering one; then flow and endpoint (client
    first); items equal in all three in their order in `items` (a stable sort). One pass reads the keys into
    columns (`_columns`; or `read`, the items' (time, endpoint, position in `State` of the state entered) as
    the caller read them: tcpfsm.fsm.transition_columns); numpy sorts them by time (quicksort: not stable, a
    third of a stable sort's instructions), and the items that share an instant (a packet that moves both
    endpoints) are put in order among themselves, their index in `items` the last key: by insertion when they
    are few, by numpy when many (a capture's end settles many connections at once). One sort key, not the
    three of a lexsort: most of what ordering a batch cost. One pass reorders; the answer (`Ordered`) carries
    the columns, reordered, for `PileCounter.feed`."""
    n: i64 = len(items)
    if read is None:
        ts, endpoint, code = _columns(items)
    else:
        ts, endpoint, new = read
        code = _LISTED_CODE[new]
    perm = np.argsort(ts).astype(np.int64)
    pm: i64[::1] = perm
    tv: i64[::1] = ts
    ev: i64[::1] = endpoint
    cv: i64[::1] = code
    i: i64 = 0
    j: i64
    k: i64
    b: i64
    x: i64
    t: i64
    while i < n:            # (bounded: each turn moves past one instant's items)
        t = tv[pm[i]]
        j = i + 1
        while j < n and tv[pm[j]] == t:     # (bounded: the instant's items)
            j += 1
        if j - i > _SMALL_TIE:
            sub = perm[i:j]
            perm[i:j] = sub[np.lexsort((sub, endpoint[sub], code[sub] >= 0))]
        elif j - i > 1:
            for k in range(i + 1, j):       # insertion sort
                x = pm[k]
                b = k - 1
                while b >= i and _before(cv[x] >= 0, ev[x], x, cv[pm[b]] >= 0, ev[pm[b]], pm[b]):   # (bounded: k - i)
                    pm[b + 1] = pm[b]
                    b -= 1
                pm[b + 1] = x
        i = j
    pairs = [None] * n
    for i in range(n):      # (bounded)
        pairs[i] = items[pm[i]]
    out = Ordered(pairs)    # (filled as a plain list: a list subclass's items are set through `__setitem__`)
    out.cols = (ts[perm], endpoint[perm], code[perm])
    return out
