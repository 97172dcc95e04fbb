"""Run kernel: the per-row scans of the tracker's vectorized path that numpy cannot express as one call.

Owns: the highest acknowledgement number of a run of segments in 32-bit sequence order, with the one it
replaced and when (`best_ack`). Must not: know about flows, connections or states; it reads arrays only.

Cython pure-Python mode, like tcpfsm/capture/_decode.py: compiled by setup.py into tcpfsm.track._runs_c
(tcpfsm/_kernels.py picks which form runs); the plain module is the readable reference and the tests
hold the two equal. Every integer is a declared C type; arrays are C-contiguous int64 views.
"""
import cython

i64 = cython.typedef(cython.longlong)
_M32 = cython.declare(cython.longlong, 0xFFFFFFFF)
_HALF = cython.declare(cython.longlong, 0x80000000)


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
