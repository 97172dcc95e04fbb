"""One connection seen by a passive observer: two endpoint machines and the evidence rules.

Theory of operation
-------------------
A connection has two `Endpoint`s, the client (the SYN sender, or the inferred
one) and the server. Each segment seen on the wire is sent by one endpoint
(X) and addressed to the other (Y). `Connection.feed` turns it into endpoint
events, in this order, and looks each one up in `table.TABLE`:

1. X's acknowledgement field is evidence of what X has received:
   an ACK covering Y's SYN (sent on a non-SYN segment) is `RCV_SYNACK` for X;
   an ACK covering Y's FIN is `RCV_FIN` for X. A FIN therefore moves its
   receiver only once the receiver's ACK of it is seen (a FIN dropped after
   the capture point must not close anything); the price is that CLOSE_WAIT
   and TIME_WAIT start when the ACK is seen, about 40 ms (Linux delayed ACK)
   after the FIN.
2. What X sent: `SND_SYN`, `SND_SYNACK`, `SND_FIN` (certain: we saw it).
3. What Y receives from X's acknowledgement field: `RCV_ACK_OF_SYN` and
   `RCV_ACK_OF_FIN`. ACKs seen are assumed delivered, unless the endpoint
   later retransmits the acknowledged SYN+ACK or FIN: then the table undoes the
   move (the ACK was lost after the capture point), and for a FIN further ACKs
   of it are no longer trusted ("deaf"), so the endpoint leaves only by timer.
4. A RST is checked for plausibility (in Y's receive window, or answering Y's
   SYN); a plausible one is `SND_RST` for X and `RCV_RST` for Y, any other is
   reported as `out_of_window_rst` and changes nothing.

Timers (2MSL, fin_timeout, retries exhausted) come from a `TimerProfile`; the
caller advances time with `expire(now)`. Nothing here does I/O or reads a clock.
Times are integer nanoseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .profiles import TimerProfile
from .states import Event, State
from .table import TABLE, is_rfc_edge

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
_EST = State.ESTABLISHED
_M32 = 0xFFFFFFFF
NS = 1_000_000_000


def seq_gt(a: int, b: int) -> bool:
    """a > b in 32-bit sequence space."""
    return 0 < ((a - b) & _M32) < 0x80000000


def seq_ge(a: int, b: int) -> bool:
    return ((a - b) & _M32) < 0x80000000


@dataclass(slots=True)
class Transition:
    ts: int                 # ns, observer time of the packet or timer
    endpoint: str           # "client" | "server"
    old: State
    new: State
    packet: int | None      # 1-based capture index, None for timers
    cause: str              # "SYN", "ACK of FIN", "timer:2MSL", "inferred:midstream", ...
    reason: str             # the table's reason
    rfc: bool               # an edge of the RFC 9293 graph (or a self-loop)
    seg: tuple | None = None  # (sender role, flags, seq, ack, payload length) of the causing packet


@dataclass(slots=True)
class Violation:
    ts: int
    endpoint: str
    kind: str               # invalid_transition | out_of_window_rst | data_after_fin
    packet: int | None
    message: str


@dataclass(slots=True)
class Endpoint:
    role: str
    state: State = State.CLOSED
    initial: State = State.CLOSED
    since: int = 0                  # ns, when the current state began
    isn: int | None = None
    syn_acked: bool = False         # the peer acknowledged our SYN
    fin_seq: int | None = None      # sequence number our FIN occupies
    fin_acked: bool = False
    deaf_to_fin_ack: bool = False   # an ACK of our FIN was proven lost: stop trusting later ones
    acked_peer_syn: bool = False
    synack_unconfirmed: bool = False  # simultaneous open: the peer's SYN+ACK seen, our ACK of it not yet
    acked_peer_fin: bool = False
    snd_nxt: int | None = None      # highest sequence number sent + 1
    ack_sent: int | None = None     # highest acknowledgement sent (what we received)
    wscale: int = -1
    win: int = 65535                # last advertised window, scaled when scaling was agreed
    not_orphan: bool = False        # acknowledged new data in FIN_WAIT_2: still owned by an application
    # counters
    packets: int = 0
    payload: int = 0
    ip_bytes: int = 0
    syns: int = 0
    synacks: int = 0
    fins: int = 0
    rsts: int = 0
    retrans: int = 0
    retrans_unanswered: int = 0     # retransmissions since the peer last sent anything
    first_unanswered_ts: int | None = None
    zero_windows: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    last_data_ts: int | None = None
    syn_ts: list[int] = field(default_factory=list)    # times of our SYN / SYN+ACK (first + retransmissions)
    fin_ts: list[int] = field(default_factory=list)    # times of our FIN (first + retransmissions)
    deadline: int | None = None
    deadline_cause: str = ""
    retry_deadline: int | None = None  # when the next retransmission is overdue: the endpoint gave up


class Connection:
    """The pair of endpoint machines of one connection (one 4-tuple + client ISN)."""

    __slots__ = ("client", "server", "profile", "transitions", "violations", "scaling", "rst_by", "rst_state",
                 "rst_ts", "rst_packet", "history", "_hist_seen", "_seg", "steady")

    def __init__(self, profile: TimerProfile):
        self.client = Endpoint("client")
        self.server = Endpoint("server")
        self.profile = profile
        self.transitions: list[Transition] = []
        self.violations: list[Violation] = []
        self.scaling = False      # both SYNs carried the window-scale option
        self.rst_by: str | None = None
        self.rst_state: State | None = None
        self.rst_ts: int | None = None
        self.rst_packet: int | None = None
        self.history = ""          # Zeek-style letters, upper case for the client (originator)
        self._hist_seen = 0
        self._seg: tuple | None = None
        self.steady = False        # both ESTABLISHED: plain segments cannot change a state (fast path)

    # -- starting points --------------------------------------------------------------
    def start(self, ts: int, first_from_client: bool, flags: int) -> None:
        """Set initial states from the first segment seen (before it is fed)."""
        c, s = self.client, self.server
        c.since = s.since = ts
        if flags & SYN and not flags & ACK:
            s.state = s.initial = State.LISTEN        # a SYN is addressed to a (would-be) listener
        elif flags & SYN and flags & ACK:
            # SYN+ACK first: the SYN was missed; the client must be in SYN_SENT.
            s.state = s.initial = State.LISTEN
            self._move(c, Event.SND_SYN, ts, None, "inferred:SYN not captured", force=State.SYN_SENT)
        elif not flags & RST:
            self._move(c, Event.MIDSTREAM, ts, None, "inferred:midstream")
            self._move(s, Event.MIDSTREAM, ts, None, "inferred:midstream")

    # -- the table lookup -------------------------------------------------------------
    def _move(self, ep: Endpoint, event: Event, ts: int, packet: int | None, cause: str,
              force: State | None = None) -> bool:
        """Apply `event` to `ep` by the table; False (and an invalid_transition) when it does not fit."""
        old = ep.state
        if force is not None:
            new, reason = force, cause
        else:
            entry = TABLE[old].get(event)
            if entry is None:
                self.violations.append(Violation(
                    ts, ep.role, "invalid_transition", packet,
                    f"{ep.role} in {old.value} got {event.value} ({cause}): not a valid TCP transition"))
                return False
            new, reason = entry
        if new is old:
            if event is Event.RCV_FIN and old is State.TIME_WAIT:
                self._arm(ep, ts, "timer:2MSL", self.profile.time_wait)
            return True
        ep.state = new
        ep.since = ts
        ep.retry_deadline = None
        self.steady = self.client.state is _EST and self.server.state is _EST \
            and not self.client.synack_unconfirmed and not self.server.synack_unconfirmed
        self.transitions.append(Transition(ts, ep.role, old, new, packet, cause, reason, is_rfc_edge(old, new),
                                           self._seg if packet is not None else None))
        # timers of the new state
        ep.deadline = None
        if new is State.TIME_WAIT:
            self._arm(ep, ts, "timer:2MSL", self.profile.time_wait)
        elif new is State.FIN_WAIT_2 and not ep.not_orphan:
            self._arm(ep, ts, "timer:fin_timeout", self.profile.fin_timeout)
        elif new is State.SYN_SENT:
            self._arm(ep, ep.syn_ts[0] if ep.syn_ts else ts, "timer:syn_retries", self.profile.syn_sent_timeout)
        elif new is State.SYN_RECEIVED:
            self._arm(ep, ts, "timer:synack_retries", self.profile.syn_recv_timeout)
        elif new is State.FIN_WAIT_1:
            self._arm(ep, ts, "timer:orphan_retries", self.profile.fin_wait_1_timeout)
        elif new is State.LAST_ACK:
            self._arm(ep, ts, "timer:orphan_retries", self.profile.last_ack_timeout)
        elif new is State.CLOSING:
            self._arm(ep, ts, "timer:orphan_retries", self.profile.closing_timeout)
        return True

    @staticmethod
    def _arm(ep: Endpoint, start: int, cause: str, seconds: float) -> None:
        ep.deadline = start + int(seconds * NS)
        ep.deadline_cause = cause

    # -- time -------------------------------------------------------------------------
    def next_deadline(self) -> int | None:
        d1, d2 = self.client.deadline, self.server.deadline  # retry deadlines only fire once observed
        if d1 is None:
            return d2
        if d2 is None:
            return d1
        return min(d1, d2)

    @staticmethod
    def _due(ep: Endpoint, now: int) -> int | None:
        """When `ep`'s timer fired, if it did by `now`. A retransmitting endpoint whose next retransmission
        is overdue has given up (Linux drops an old half-open request after fewer SYN+ACK retries when its
        queue is half full, for instance); the profile's deadline is the fallback."""
        due = ep.deadline
        r = ep.retry_deadline
        if r is not None and r <= now and (due is None or r < due):
            due = r
        return due if due is not None and due <= now else None

    def expire(self, now: int) -> None:
        """Fire every timer due at or before `now`, in time order."""
        c, s = self.client, self.server
        if c.deadline is None and s.deadline is None and c.retry_deadline is None and s.retry_deadline is None:
            return
        while True:
            dues = [(d, e) for e in (self.client, self.server) if (d := self._due(e, now)) is not None]
            if not dues:
                return
            when, ep = min(dues, key=lambda de: de[0])
            cause = ep.deadline_cause
            if ep.deadline is None or when < ep.deadline:
                cause += " (retransmissions stopped)"
            ep.deadline = ep.retry_deadline = None
            self._move(ep, Event.TIMEOUT, when, None, cause)

    @staticmethod
    def _retry(ep: Endpoint, times: list[int]) -> None:
        """After a retransmission, expect the next one by twice the last gap (exponential back-off)."""
        if len(times) >= 2:
            gap = times[-1] - times[-2]
            ep.retry_deadline = times[-1] + 2 * gap + gap // 4 + 200_000_000

    def pending(self, ep: Endpoint) -> tuple[int, State] | None:
        """The timer that would next change `ep` if no packet came: (when, new state)."""
        if ep.deadline is None:
            return None
        entry = TABLE[ep.state].get(Event.TIMEOUT)
        return (ep.deadline, entry[0]) if entry else None

    # -- segments ---------------------------------------------------------------------
    def feed_plain(self, ts: int, from_client: bool, flags: int, seq: int, ack: int, win: int, plen: int,
                   ip_len: int) -> None:
        """A segment without SYN, FIN or RST while both endpoints are ESTABLISHED (`steady`): it can change
        no state, so only the counters and sequence bookkeeping that later rules read are updated. This is
        the path of nearly every packet of a capture; `feed` is the reference it must agree with."""
        x, y = (self.client, self.server) if from_client else (self.server, self.client)
        x.packets += 1
        x.payload += plen
        x.ip_bytes += ip_len
        if x.first_ts is None:
            x.first_ts = ts
        x.last_ts = ts
        y.retrans_unanswered = 0
        shift = 0 if from_client else 6
        nxt = x.snd_nxt
        end = (seq + plen) & _M32
        if plen:
            x.last_data_ts = ts
            if nxt is not None and 0 < ((nxt - seq) & _M32) < 0x80000000:   # seq < snd_nxt: a retransmission
                x.retrans += 1
                if not x.retrans_unanswered:
                    x.first_unanswered_ts = ts
                x.retrans_unanswered += 1
            bit = 8 << shift                                     # history "D"
        else:
            bit = 4 << shift if flags & ACK else 0               # history "A"
        if nxt is None or 0 < ((end - nxt) & _M32) < 0x80000000:
            x.snd_nxt = end
        if bit and not self._hist_seen & bit:
            self._hist_seen |= bit
            self.history += ("D" if plen else "A") if from_client else ("d" if plen else "a")
        if flags & ACK:
            sent = x.ack_sent
            if sent is None or 0 < ((ack - sent) & _M32) < 0x80000000:
                x.ack_sent = ack
        x.win = win << (x.wscale if self.scaling and x.wscale > 0 else 0)
        if not win:
            x.zero_windows += 1

    def feed(self, ts: int, packet: int, from_client: bool, flags: int, seq: int, ack: int, win: int,
             plen: int, wscale: int, ip_len: int) -> None:
        x, y = (self.client, self.server) if from_client else (self.server, self.client)
        self._seg = (x.role, flags, seq, ack, plen)
        x.packets += 1
        x.payload += plen
        x.ip_bytes += ip_len
        if x.first_ts is None:
            x.first_ts = ts
        x.last_ts = ts
        syn = flags & SYN
        hasack = flags & ACK
        y.retrans_unanswered = 0
        # history letters: S H A D F R (first occurrence per direction)
        if flags & RST:
            letter = "R"
        elif syn:
            letter = "H" if hasack else "S"
        elif flags & FIN:
            letter = "F"
        elif plen:
            letter = "D"
        elif hasack:
            letter = "A"
        else:
            letter = ""
        if letter:
            bit = 1 << ("SHADFR".index(letter) + (0 if from_client else 6))
            if not self._hist_seen & bit:
                self._hist_seen |= bit
                self.history += letter if from_client else letter.lower()
            if plen and letter != "D" and not self._hist_seen & (1 << (3 + (0 if from_client else 6))):
                self._hist_seen |= 1 << (3 + (0 if from_client else 6))
                self.history += "D" if from_client else "d"

        if flags & RST:
            x.rsts += 1
            self._rst(x, y, ts, packet, flags, seq, ack)
            return

        # sequence bookkeeping: retransmissions, data after FIN
        end = (seq + plen + (1 if syn else 0) + (1 if flags & FIN else 0)) & _M32
        if plen:
            x.last_data_ts = ts
            if x.snd_nxt is not None and seq_gt(x.snd_nxt, seq):
                x.retrans += 1
                if not x.retrans_unanswered:
                    x.first_unanswered_ts = ts
                x.retrans_unanswered += 1
            if x.fin_seq is not None and seq_gt((seq + plen) & _M32, x.fin_seq):
                self.violations.append(Violation(
                    ts, x.role, "data_after_fin", packet,
                    f"{x.role} sent {plen} bytes at seq {seq} after its FIN (seq {x.fin_seq})"))
        if x.snd_nxt is None or seq_gt(end, x.snd_nxt):
            x.snd_nxt = end
        if not syn:
            x.win = win << (x.wscale if self.scaling and x.wscale > 0 else 0)
            if win == 0:
                x.zero_windows += 1

        # A handshake we did not see: only the client's own ACK proves that a SYN+ACK reached it. A
        # "server" talking before any SYN+ACK is a violation (the client's SYN retransmissions would show it).
        if not syn and hasack and self.client.state is State.SYN_SENT and self.server.isn is None:
            if x is self.client:
                self._infer_synack(x, y, ts, packet, seq, ack)
            else:
                self.violations.append(Violation(
                    ts, x.role, "invalid_transition", packet,
                    f"server sent a segment without SYN (flags {flags:#x}) before any SYN+ACK, to a client in "
                    "SYN_SENT; ignored"))
                return

        # 1. what X's acknowledgement says X received
        if hasack:
            if x.synack_unconfirmed and not syn:
                x.synack_unconfirmed = False
                self._move(x, Event.RCV_ACK_OF_SYN, ts, packet, "ACK of SYN+ACK")
            if not syn and y.isn is not None and not x.acked_peer_syn and seq_gt(ack, y.isn):
                x.acked_peer_syn = True
                self._move(x, Event.RCV_SYNACK, ts, packet, "ACK of SYN+ACK")
            if y.fin_seq is not None and not x.acked_peer_fin and seq_gt(ack, y.fin_seq):
                x.acked_peer_fin = True
                self._move(x, Event.RCV_FIN, ts, packet, "ACK of FIN")
            elif x.state is State.FIN_WAIT_2 and not x.not_orphan and x.ack_sent is not None \
                    and seq_gt(ack, x.ack_sent):
                # An orphaned Linux socket answers data in FIN_WAIT_2 with RST; acknowledging it means an
                # application still owns the socket (shutdown(SHUT_WR)), so fin_timeout does not apply.
                x.not_orphan = True
                x.deadline = None
            if x.ack_sent is None or seq_gt(ack, x.ack_sent):
                x.ack_sent = ack

        # 2. what X sent
        if syn:
            if hasack:
                if x.isn is None:
                    x.isn = seq
                elif seq != x.isn:
                    self.violations.append(Violation(
                        ts, x.role, "invalid_transition", packet,
                        f"{x.role} sent a SYN+ACK with ISN {seq}, its earlier SYN had {x.isn}"))
                    return
                x.synacks += 1
                x.syn_ts.append(ts)
                if y.isn is not None and ack == (y.isn + 1) & _M32:
                    x.acked_peer_syn = True
                if wscale >= 0:
                    x.wscale = wscale
                self.scaling = x.wscale >= 0 and y.wscale >= 0
                self._move(x, Event.SND_SYNACK, ts, packet, "SYN+ACK")
                if x.state is State.SYN_RECEIVED:
                    self._retry(x, x.syn_ts)
            else:
                if x.isn is None:
                    x.isn = seq
                    x.wscale = wscale
                elif seq != x.isn:
                    self.violations.append(Violation(
                        ts, x.role, "invalid_transition", packet,
                        f"{x.role} sent a SYN with ISN {seq} inside a connection whose ISN is {x.isn}"))
                    return
                x.syns += 1
                x.syn_ts.append(ts)
                if x.state is State.LISTEN and x.syns == 1 and not x.synacks:
                    x.state = x.initial = State.CLOSED     # it opens actively: simultaneous open, no listener
                self._move(x, Event.SND_SYN, ts, packet, "SYN")
                if x.state is State.SYN_SENT:
                    self._retry(x, x.syn_ts)
        if flags & FIN:
            fin_at = (seq + plen + (1 if syn else 0)) & _M32
            x.fins += 1
            x.fin_ts.append(ts)
            if x.fin_seq is None:
                x.fin_seq = fin_at
                if not self._move(x, Event.SND_FIN, ts, packet, "FIN"):
                    x.fin_seq = None                # a FIN that fits no state is reported and ignored
            elif fin_at == x.fin_seq:
                if x.fin_acked:                     # its ACK was seen, yet it retransmits: the ACK was lost
                    x.fin_acked = False
                    x.deaf_to_fin_ack = True
                self._move(x, Event.SND_FIN, ts, packet, "FIN retransmitted")
                if x.state in (State.FIN_WAIT_1, State.LAST_ACK, State.CLOSING):
                    self._retry(x, x.fin_ts)
            elif seq_gt(fin_at, x.fin_seq):
                self.violations.append(Violation(
                    ts, x.role, "data_after_fin", packet,
                    f"{x.role} sent a second FIN at seq {fin_at}, past its first FIN at {x.fin_seq}"))

        # 3. what Y learns from X's acknowledgement
        if hasack:
            if y.isn is not None and not y.syn_acked and seq_gt(ack, y.isn):
                y.syn_acked = True
                if syn and y.state is State.SYN_RECEIVED:
                    y.synack_unconfirmed = True     # simultaneous open: wait for y's own ACK as evidence
                else:
                    self._move(y, Event.RCV_ACK_OF_SYN, ts, packet, "ACK of SYN")
            if y.fin_seq is not None and not y.fin_acked and not y.deaf_to_fin_ack and seq_gt(ack, y.fin_seq):
                y.fin_acked = True
                self._move(y, Event.RCV_ACK_OF_FIN, ts, packet, "ACK of FIN")
        # a retransmitted SYN+ACK after the handshake ACK was seen: that ACK was lost (table undoes it)
        if syn and hasack and x.state is State.SYN_RECEIVED and x.syn_acked:
            x.syn_acked = False

    def _infer_synack(self, x: Endpoint, y: Endpoint, ts: int, packet: int, seq: int, ack: int) -> None:
        """Segments flow but the SYN+ACK was not captured: infer it from the sequence numbers."""
        client, server = self.client, self.server
        if client.state is not State.SYN_SENT or server.isn is not None:
            return
        server.isn = ((seq if x is server else ack) - 1) & _M32
        server.acked_peer_syn = True
        if server.state in (State.LISTEN, State.CLOSED):
            self._move(server, Event.SND_SYNACK, ts, packet, "inferred:SYN+ACK not captured",
                       force=State.SYN_RECEIVED)

    def _rst(self, x: Endpoint, y: Endpoint, ts: int, packet: int, flags: int, seq: int, ack: int) -> None:
        if y.state is State.SYN_SENT:
            plausible = bool(flags & ACK) and y.isn is not None and ack == (y.isn + 1) & _M32
            why = "it does not acknowledge the SYN"
        else:
            lo = y.ack_sent if y.ack_sent is not None else x.snd_nxt
            if lo is None:
                plausible, why = True, ""
            else:
                if x.snd_nxt is not None and seq_gt(lo, x.snd_nxt):
                    lo = x.snd_nxt                   # Y's ACK may not have caught up with what X sent
                hi = lo
                if x.snd_nxt is not None and seq_gt(x.snd_nxt, hi):
                    hi = x.snd_nxt
                window = max(y.win, 1)
                plausible = seq_ge(seq, lo) and seq_gt((hi + window) & _M32, seq)
                why = f"seq {seq} is outside {y.role}'s window [{lo}, {(hi + window) & _M32})"
        if not plausible:
            self.violations.append(Violation(ts, x.role, "out_of_window_rst", packet,
                                             f"RST from {x.role} ignored: {why}"))
            return
        if self.rst_by is None and x.state not in (State.CLOSED, State.LISTEN):
            self.rst_by, self.rst_state, self.rst_ts, self.rst_packet = x.role, x.state, ts, packet
        elif self.rst_by is None and x.state is State.LISTEN:
            self.rst_by, self.rst_state, self.rst_ts, self.rst_packet = x.role, x.state, ts, packet
        self._move(x, Event.SND_RST, ts, packet, "RST sent")
        self._move(y, Event.RCV_RST, ts, packet, "RST")
