"""Run kernel: the per-row scans of the tracker's vectorized path that numpy cannot express as one call.

Owns: the highest acknowledgement number of a run of segments in 32-bit sequence order, with the one it
replaced and when (`best_ack`); the rows of a batch grouped by their flow key in one pass over a hash table
(`group_rows`). Must not: know about flows, connections or states; it reads arrays only.

Cython pure-Python mode, like tcpfsm/capture/_decode.py: compiled by setup.py into tcpfsm.track._runs_c
(tcpfsm/_kernels.py picks which form runs); the plain module is the readable reference and the tests
hold the two equal. Every integer is a declared C type; arrays are C-contiguous int64 views.
"""
import cython

i64 = cython.typedef(cython.longlong)
u64 = cython.typedef(cython.ulonglong)
_M32 = cython.declare(cython.longlong, 0xFFFFFFFF)
_HALF = cython.declare(cython.longlong, 0x80000000)
# FNV-1a over 64 bits (its offset basis with the top bit cleared: a literal above 2**63 would not convert);
# C arithmetic wraps at 2**64, the uncompiled module masks its Python ints to the same values
_FNV_OFFSET = cython.declare(cython.ulonglong, 0x4BF29CE484222325)
_FNV_PRIME = cython.declare(cython.ulonglong, 0x100000001B3)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.ccall
def group_rows(key: cython.const[cython.uchar][:, ::1], grow: cython.longlong[::1], first: cython.longlong[::1],
               perm: cython.longlong[::1], starts: cython.longlong[::1], slots: cython.longlong[::1]) -> i64:
    """Group the rows of a batch by key (row i's key is key[i, :]), groups numbered in order of their first
    row: grow[i] = row i's group, first[g] = group g's first row. perm lists the rows group by group, each
    group's rows in their order (a stable counting sort); group g's rows are perm[starts[g]:starts[g + 1]].
    `slots`: scratch for the open-addressing hash table, a power of two longer than the rows, filled with -1.
    Returns the number of groups. (What np.unique and two stable argsorts gave, in O(rows).)"""
    n: i64 = key.shape[0]
    w: i64 = key.shape[1]
    mask: i64 = slots.shape[0] - 1
    ngroups: i64 = 0
    i: i64
    j: i64
    g: i64
    r: i64
    h: u64
    same: cython.bint
    for i in range(n):
        h = _FNV_OFFSET
        for j in range(w):
            h = (h ^ cython.cast(u64, key[i, j])) * _FNV_PRIME
            if not cython.compiled:
                h &= (1 << 64) - 1
        s: i64 = cython.cast(i64, h & cython.cast(u64, mask))
        while True:
            g = slots[s]
            if g < 0:                       # a new key: a new group
                g = ngroups
                ngroups += 1
                slots[s] = g
                first[g] = i
                break
            r = first[g]
            same = True
            for j in range(w):
                if key[r, j] != key[i, j]:
                    same = False
                    break
            if same:
                break
            s = (s + 1) & mask
        grow[i] = g
    # counting sort: starts[g] = rows of groups before g; then each row to its group's next place
    for g in range(ngroups + 1):
        starts[g] = 0
    for i in range(n):
        starts[grow[i] + 1] += 1
    for g in range(ngroups):
        starts[g + 1] += starts[g]
    for g in range(ngroups):
        slots[g] = starts[g]                # (the table is done with: reused as each group's fill pointer)
    for i in range(n):
        g = grow[i]
        perm[slots[g]] = i
        slots[g] += 1
    return ngroups


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.ccall
def best_ack(ack: cython.longlong[::1], clock: cython.longlong[::1], p: i64, q: i64):
    """Rows [p, q) of one direction: `ack[i]` is the acknowledgement number of an ACK sent there, -1 where
    the row is not one. Returns (best, prev, ts): the highest acknowledgement in sequence space (a later
    one wins only if it is ahead modulo 2**32), the highest before it became so (None if it was the run's
    first), and `clock` at the row where it did; (None, None, None) without any ACK."""
    best: i64 = -1
    prev: i64 = -1
    best_i: i64 = -1
    i: i64
    v: i64
    d: i64
    for i in range(p, q):
        v = ack[i]
        if v < 0:
            continue
        if best >= 0:
            d = (v - best) & _M32
            if d == 0 or d >= _HALF:
                continue
        prev = best
        best = v
        best_i = i
    if best < 0:
        return None, None, None
    return int(best), (int(prev) if prev >= 0 else None), int(clock[best_i])
