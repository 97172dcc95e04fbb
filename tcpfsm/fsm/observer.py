# cython: annotation_typing=False
"""The observer model: where the capture point stands on a connection's path, and what that implies.

Owns the per-connection estimate of the one-way delay between the capture point (the tap) and each
endpoint, and the three questions every evidence rule in `machine` asks of it. It reads no packets
itself: the machine tells it when it saw the handshake.

Theory of operation
-------------------
A packet is seen at the tap at time t. It left its sender at t - d(sender) and reaches its receiver at
t + d(receiver), where d(x) is the one-way delay between the tap and endpoint x. Endpoint states change
when something happens *at the endpoint*, so every transition is stamped twice: `ts`, the observer's
time of the packet (or timer) that caused it, and `at`, when the endpoint changed state by this model:

- what an endpoint did (sent a SYN, a FIN, a RST) happened at `departure(t)`: one tap->sender delay
  before the tap saw it;
- what an endpoint received happened at `arrival(t)`: one tap->receiver delay after the tap saw it,
  unless later evidence says the segment was lost after the tap.

Later evidence can only count if it was *sent after* the segment arrived: a retransmission seen at u
left its sender at u - d(sender); if that is before the acknowledgement it seems to contradict reached
that sender, the retransmission was already in flight and proves nothing (`sent_after`). This is the
rule that long delays break when it is ignored: a retransmitted FIN crossing the final ACK on a 150 ms
path is not evidence that the ACK was lost.

The delays come from the handshake, the one exchange in which both endpoints answer at once (the kernel
sends SYN+ACK and the handshake ACK without waiting for an application):

    SYN seen at t1, SYN+ACK at t2, handshake ACK at t3:
    t2 - t1 = 2 d(server)        t3 - t2 = 2 d(client)

A tap next to the client sees a short second gap and a long first one; next to the server, the reverse;
in the middle, both are about half the round trip. `--capture-point client|server|middle` overrides the
split (the round trip is still measured); without a handshake the delays are zero, which is right for a
capture taken on one of the two hosts, the usual case. `place()` names where the tap seems to stand.
Times are integer nanoseconds.
"""
from __future__ import annotations

import cython

i64 = cython.typedef(cython.longlong)     # every integer that is never None: a C long long

CAPTURE_POINTS = ("auto", "client", "middle", "server")
_MS = cython.declare(i64, 1_000_000)
_NONE = cython.declare(i64, -0x7FFFFFFFFFFFFFFF)     # a time field that holds None (as in machine.py)


@cython.final
@cython.no_gc
@cython.cclass
class Observer:
    """One connection's view from the tap: the one-way delays to its client and its server. A Cython
    pure-Python-mode kernel (tcpfsm/_kernels.py): compiled, a C struct; the same code runs uncompiled.
    Compiled, 80 bytes and nothing else per connection: the handshake's times are C integers (`_NONE`: none
    yet, read back as None by the properties), not int objects (~130 bytes a connection more)."""

    point = cython.declare(str, visibility="public")
    d_client = cython.declare(i64, visibility="public")     # ns, tap -> client
    d_server = cython.declare(i64, visibility="public")     # ns, tap -> server
    _syn_ts = cython.declare(i64)          # `syn_ts`: the latest SYN
    _synack_ts = cython.declare(i64)       # `synack_ts`: the latest SYN+ACK (the one the handshake ACK answers)
    _g_server = cython.declare(i64)        # `g_server`: SYN -> the SYN+ACK that answered it
    measured = cython.declare(cython.bint, visibility="public")   # the delays come from a handshake seen whole
    answered = cython.declare(cython.bint, visibility="public")   # the latest SYN already has its SYN+ACK

    def __init__(self, point: str = "auto"):
        if point not in CAPTURE_POINTS:
            raise ValueError(f"unknown capture point {point!r} (choose from {', '.join(CAPTURE_POINTS)})")
        self.point = point
        self.d_client = 0
        self.d_server = 0
        self.measured = False
        self._syn_ts = self._synack_ts = self._g_server = _NONE
        self.answered = True

    @property
    def syn_ts(self):
        return None if self._syn_ts == _NONE else self._syn_ts

    @syn_ts.setter
    def syn_ts(self, v):
        self._syn_ts = _NONE if v is None else v

    @property
    def synack_ts(self):
        return None if self._synack_ts == _NONE else self._synack_ts

    @synack_ts.setter
    def synack_ts(self, v):
        self._synack_ts = _NONE if v is None else v

    @property
    def g_server(self):
        return None if self._g_server == _NONE else self._g_server

    @g_server.setter
    def g_server(self, v):
        self._g_server = _NONE if v is None else v

    # -- learning from the handshake --------------------------------------------------------------
    @cython.ccall
    @cython.locals(ts=i64)
    def saw_syn(self, ts: int) -> None:
        self._syn_ts, self.answered = ts, False

    @cython.ccall
    @cython.locals(ts=i64)
    def saw_synack(self, ts: int) -> None:
        """A SYN+ACK pairs with the latest SYN not yet answered (a retransmitted SYN+ACK, sent on the
        server's timer, does not); the handshake ACK pairs with the latest SYN+ACK."""
        if not self.answered and self._syn_ts != _NONE:
            self._g_server, self.answered = max(0, ts - self._syn_ts), True
        self._synack_ts = ts

    @cython.ccall
    @cython.locals(ts=i64, g_server=i64, g_client=i64)
    def saw_handshake_ack(self, ts: int) -> None:
        """The client's first acknowledgement of the SYN+ACK: both gaps are known (only the client's when
        the SYN was not captured)."""
        if self.measured or self._synack_ts == _NONE:
            return
        g_server = self._g_server if self._g_server != _NONE else 0
        g_client = max(0, ts - self._synack_ts)
        self.measured = True
        if self.point == "client":
            self.d_client, self.d_server = 0, (g_server + g_client) // 2
        elif self.point == "server":
            self.d_client, self.d_server = (g_server + g_client) // 2, 0
        elif self.point == "middle":
            self.d_client = self.d_server = (g_server + g_client) // 4
        else:
            self.d_client, self.d_server = g_client // 2, g_server // 2

    # -- the three questions ----------------------------------------------------------------------
    @cython.ccall
    @cython.returns(i64)
    @cython.locals(to_client=cython.bint)
    def delay(self, to_client: bool) -> int:
        return self.d_client if to_client else self.d_server

    @cython.ccall
    @cython.returns(i64)
    @cython.locals(ts=i64, to_client=cython.bint)
    def arrival(self, ts: int, to_client: bool) -> int:
        """When a segment seen at `ts` reached its receiver (if it did)."""
        return ts + (self.d_client if to_client else self.d_server)

    @cython.ccall
    @cython.returns(i64)
    @cython.locals(ts=i64, from_client=cython.bint)
    def departure(self, ts: int, from_client: bool) -> int:
        """When a segment seen at `ts` left its sender."""
        return ts - (self.d_client if from_client else self.d_server)

    @cython.ccall
    @cython.returns(cython.bint)
    @cython.locals(ts=i64, from_client=cython.bint, t=i64)
    def sent_after(self, ts: int, from_client: bool, t: int) -> bool:
        """Did the segment seen at `ts` leave its sender after instant `t` (beyond timing noise)?"""
        return self.departure(ts, from_client) > t + self.margin()

    @cython.ccall
    @cython.returns(i64)
    def margin(self) -> int:
        """Timing noise: scheduling and serialisation (1 ms), plus a tenth of the round trip for jitter."""
        return _MS + (self.d_client + self.d_server) // 5

    @cython.ccall
    @cython.returns(i64)
    def rtt(self) -> int:
        return 2 * (self.d_client + self.d_server)

    def place(self) -> str:
        """Where the tap seems to stand: client, server, middle, or unknown (no handshake, no override)."""
        if self.point != "auto":
            return self.point
        total = self.d_client + self.d_server
        if not self.measured or total < 200_000:       # under 0.2 ms round trip: one host or one LAN
            return "unknown" if not self.measured else "near both"
        if self.d_client * 4 < total:
            return "client"
        if self.d_server * 4 < total:
            return "server"
        return "middle"

    def as_dict(self) -> dict:
        return {"capture_point": self.place(), "delay_ms": {"client": round(self.d_client / 1e6, 3),
                                                            "server": round(self.d_server / 1e6, 3)},
                "measured": self.measured}
