"""State and event vocabulary of one TCP endpoint, and the spellings other tools use.

Owns names only; no behaviour.
"""
from __future__ import annotations

from enum import Enum


class State(str, Enum):
    """RFC 9293 connection states, upper snake case in every machine-readable output."""

    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"
    CLOSED = "CLOSED"

    def __str__(self) -> str:
        return self.value


class Event(str, Enum):
    """What one endpoint experiences, as far as a passive observer can tell.

    `SND_*` events are certain when the segment is seen (the endpoint sent it).
    `RCV_*` events need evidence that the endpoint got the segment; see
    machine.py for which evidence each one takes.
    """

    SND_SYN = "SND_SYN"              # sent a SYN without ACK (active open, or a retransmission)
    SND_SYNACK = "SND_SYNACK"        # sent a SYN+ACK: it had received the peer's SYN
    RCV_SYNACK = "RCV_SYNACK"        # acknowledged the peer's SYN+ACK (its handshake ACK was seen)
    RCV_ACK_OF_SYN = "RCV_ACK_OF_SYN"  # the peer acknowledged our SYN (the handshake's third step, or simultaneous open)
    SND_FIN = "SND_FIN"              # sent a FIN (close or shutdown(SHUT_WR))
    RCV_FIN = "RCV_FIN"              # acknowledged the peer's FIN (the evidence it received it)
    RCV_ACK_OF_FIN = "RCV_ACK_OF_FIN"  # the peer acknowledged our FIN
    SND_RST = "SND_RST"              # sent a RST (abort or refusal)
    RCV_RST = "RCV_RST"              # received a plausible RST
    TIMEOUT = "TIMEOUT"              # a timer of the OS profile fired (2MSL, fin_timeout, retries exhausted)
    MIDSTREAM = "MIDSTREAM"          # first seen with data and no handshake: assumed established
    # Inferred events: what an endpoint must have done for the packets we did see to exist.
    INFER_SYN = "INFER_SYN"          # a SYN+ACK was seen first: its receiver had sent a SYN we did not capture
    INFER_SYNACK = "INFER_SYNACK"    # the client acknowledged a SYN+ACK we did not capture
    INFER_SYNCED = "INFER_SYNCED"    # the peer acknowledged this endpoint's data: it had completed its handshake
    REUSED = "REUSED"                # a new SYN with another ISN on this 4-tuple was accepted (TIME_WAIT assassinated)
    COOKIE = "COOKIE"                # its SYN+ACK was never retransmitted: a SYN cookie, no request was kept
    # ICMP (tcpfsm/path/icmp.py ties an ICMP error to the connection whose segment it quotes)
    RCV_ICMP_ERROR = "RCV_ICMP_ERROR"  # an ICMP error quoting our SYN reached us (unreachable, prohibited, time exceeded)
    SND_SYN_AFTER_ICMP = "SND_SYN_AFTER_ICMP"  # our SYN retransmitted after such an error: it had not ended connect()


# What `netstat -nat` prints (Linux net-tools spellings).
NETSTAT_NAME: dict[State, str] = {
    State.LISTEN: "LISTEN",
    State.SYN_SENT: "SYN_SENT",
    State.SYN_RECEIVED: "SYN_RECV",
    State.ESTABLISHED: "ESTABLISHED",
    State.FIN_WAIT_1: "FIN_WAIT1",
    State.FIN_WAIT_2: "FIN_WAIT2",
    State.CLOSE_WAIT: "CLOSE_WAIT",
    State.CLOSING: "CLOSING",
    State.LAST_ACK: "LAST_ACK",
    State.TIME_WAIT: "TIME_WAIT",
    State.CLOSED: "CLOSE",
}

# What `ss -tan` prints (iproute2 spellings), used to compare with kernel truth.
SS_NAME: dict[State, str] = {
    State.LISTEN: "LISTEN",
    State.SYN_SENT: "SYN-SENT",
    State.SYN_RECEIVED: "SYN-RECV",
    State.ESTABLISHED: "ESTAB",
    State.FIN_WAIT_1: "FIN-WAIT-1",
    State.FIN_WAIT_2: "FIN-WAIT-2",
    State.CLOSE_WAIT: "CLOSE-WAIT",
    State.CLOSING: "CLOSING",
    State.LAST_ACK: "LAST-ACK",
    State.TIME_WAIT: "TIME-WAIT",
    State.CLOSED: "UNCONN",
}
FROM_SS: dict[str, State] = {v: k for k, v in SS_NAME.items()}
