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
def best_ack(ack: cython.const[cython.longlong][::1], clock: cython.const[cython.longlong][::1], p: i64, q: i64):
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


# The run table of one batch (`run_sums`): int64 rows over the batch's rows in group order, one block of these
# per direction (the lower side's first), then the clock and the window. Prefix sums (P[q] - P[p] is the
# total over rows [p, q)): cnt (segments), plen (payload bytes), ipl (IP bytes), zero (zero windows), retr
# (retransmissions), data (segments with payload), pack (pure ACKs). Per row: last (last row this direction
# sent at or before it, -1), lastdata (same, with payload), incl (highest relative sequence end sent so far,
# carry included), first / nretr / ndata / npack (first row at or after it that this direction sent / that is
# a retransmission / carries data / is a pure ACK; n if none), ack (its acknowledgement number if it is this
# direction's ACK, else -1). Per group: ref (the reference of the relative sequence numbers).
RUN_ROWS = ("cnt", "plen", "ipl", "zero", "retr", "data", "pack", "last", "lastdata", "incl", "first", "nretr",
            "ndata", "npack", "ack", "ref")
_CNT = cython.declare(i64, 0)
_PLEN = cython.declare(i64, 1)
_IPL = cython.declare(i64, 2)
_ZERO = cython.declare(i64, 3)
_RETR = cython.declare(i64, 4)
_DATA = cython.declare(i64, 5)
_PACK = cython.declare(i64, 6)
_LAST = cython.declare(i64, 7)
_LASTDATA = cython.declare(i64, 8)
_INCL = cython.declare(i64, 9)
_FIRST = cython.declare(i64, 10)
_NRETR = cython.declare(i64, 11)
_NDATA = cython.declare(i64, 12)
_NPACK = cython.declare(i64, 13)
_ACK = cython.declare(i64, 14)
_REF = cython.declare(i64, 15)
_NEG = cython.declare(cython.longlong, -(1 << 39))     # below: "no sequence sent yet" (the tracker's -INF/2)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.ccall
def run_sums(m: cython.const[cython.longlong][:, ::1], mine: i64, other: i64, clock: i64, win: i64, gi: i64,
             p: i64, q: i64):
    """Rows [p, q) of group `gi` -- plain segments of a steady connection -- as one direction's sums, read from
    the run table `m` (see RUN_ROWS; `mine` / `other`: the first row of this direction's / the other's block,
    `clock`, `win`: the clock and window rows). Returns the arguments of Connection.absorb_run after
    `from_client` -- (packets, payload, ip_bytes, zero_windows, retrans, unanswered, first_unanswered_ts,
    first_ts, last_ts, last_data_ts, win, snd_nxt, ack_sent, ack_prev, ack_adv_ts) -- then the rows of this
    direction's first data segment and first pure ACK in the run (-1 if none), for the history letters."""
    cnt: i64 = m[mine + _CNT, q] - m[mine + _CNT, p]
    last_y: i64 = m[other + _LAST, q - 1]
    k_all: i64 = m[mine + _RETR, q] - m[mine + _RETR, p]
    un: i64
    unanswered: object = None
    first_un: object = None
    if last_y >= p:                      # the peer spoke in the run: count retransmissions since then
        un = m[mine + _RETR, q] - m[mine + _RETR, last_y + 1]
        unanswered = int(un)
        if un:
            first_un = int(m[clock, m[mine + _NRETR, last_y + 1]])
    if unanswered is None and k_all:
        first_un = int(m[clock, m[mine + _NRETR, p]])
    if not cnt:
        return (0, 0, 0, 0, 0, unanswered, first_un, 0, 0, None, 0, None, None, None, None, -1, -1)
    last: i64 = m[mine + _LAST, q - 1]
    rel: i64 = m[mine + _INCL, q - 1]
    ndata: i64 = m[mine + _DATA, q] - m[mine + _DATA, p]
    npack: i64 = m[mine + _PACK, q] - m[mine + _PACK, p]
    snd_nxt: object = int((m[mine + _REF, gi] + rel) & _M32) if rel > _NEG else None
    best, prev, ts = best_ack(m[mine + _ACK], m[clock], p, q)
    return (int(cnt), int(m[mine + _PLEN, q] - m[mine + _PLEN, p]), int(m[mine + _IPL, q] - m[mine + _IPL, p]),
            int(m[mine + _ZERO, q] - m[mine + _ZERO, p]), int(k_all), unanswered, first_un,
            int(m[clock, m[mine + _FIRST, p]]), int(m[clock, last]),
            int(m[clock, m[mine + _LASTDATA, q - 1]]) if ndata else None, int(m[win, last]), snd_nxt,
            best, prev, ts,
            int(m[mine + _NDATA, p]) if ndata else -1, int(m[mine + _NPACK, p]) if npack else -1)
