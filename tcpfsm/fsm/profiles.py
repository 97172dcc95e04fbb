"""Timer profiles: how long each OS keeps an endpoint in a timed state.

Values are seconds, named after the kernel knob they stand for. Every value
can be overridden (`get_profile("linux", time_wait=30)`). A timer runs from
the moment the endpoint entered the state (TIME_WAIT restarts when a
retransmitted FIN is re-acknowledged, as Linux does).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True, slots=True)
class TimerProfile:
    name: str
    time_wait: float          # TIME_WAIT length (2MSL)
    fin_timeout: float        # orphaned FIN_WAIT_2 lifetime after our FIN was acknowledged
    syn_sent_timeout: float   # first SYN -> connect() gives up (SYN retries exhausted)
    syn_recv_timeout: float   # first SYN+ACK -> half-open connection dropped (SYN+ACK retries)
    fin_wait_1_timeout: float  # FIN never acknowledged -> orphan retries exhausted
    last_ack_timeout: float   # passive closer's FIN never acknowledged -> gives up
    closing_timeout: float    # CLOSING with our FIN never acknowledged

    def timeout_for(self, state: str) -> float | None:
        """Seconds the timer of `state` runs (None: the state has no timer), by the table's TIMEOUTS."""
        from .table import TIMEOUTS
        from .states import State

        entry = TIMEOUTS.get(State(state))
        return getattr(self, entry[0]) if entry else None


PROFILES: dict[str, TimerProfile] = {
    # Linux 6.x defaults, measured on 6.18 by captures/record.py: TIME_WAIT 60 s (gone 60.8-61 s after the
    # FIN); orphan FIN_WAIT_2 60 s (tcp_fin_timeout); SYN retries 1,1,1,1,1 s then 2,4,8,16,33 s, connect()
    # fails 134.7 s after the first SYN; SYN+ACK at +1,+3,+7,+15,+31 s, the request is gone 64.5 s after it;
    # tcp_orphan_retries 0 -> 8 retries from a 200 ms RTO (about 102 s).
    "linux": TimerProfile("linux", time_wait=60.0, fin_timeout=60.0, syn_sent_timeout=134.7,
                          syn_recv_timeout=64.5, fin_wait_1_timeout=102.0, last_ack_timeout=102.0,
                          closing_timeout=102.0),
    # FreeBSD: MSL 30 s (TIME_WAIT 60 s), tcp_finwait2_timeout 60 s, keepinit 75 s, syncache 3 retries.
    "bsd": TimerProfile("bsd", time_wait=60.0, fin_timeout=60.0, syn_sent_timeout=75.0, syn_recv_timeout=45.0,
                        fin_wait_1_timeout=120.0, last_ack_timeout=120.0, closing_timeout=120.0),
    # macOS: MSL 15 s (TIME_WAIT 30 s), connection timeout 75 s.
    "macos": TimerProfile("macos", time_wait=30.0, fin_timeout=60.0, syn_sent_timeout=75.0, syn_recv_timeout=45.0,
                          fin_wait_1_timeout=120.0, last_ack_timeout=120.0, closing_timeout=120.0),
    # Windows: TcpTimedWaitDelay 240 s, TcpMaxConnectRetransmissions 2 (about 21 s),
    # TcpMaxConnectResponseRetransmissions 2, FIN_WAIT_2 120 s.
    "windows": TimerProfile("windows", time_wait=240.0, fin_timeout=120.0, syn_sent_timeout=21.0,
                            syn_recv_timeout=21.0, fin_wait_1_timeout=120.0, last_ack_timeout=120.0,
                            closing_timeout=120.0),
}

OVERRIDABLE = [f.name for f in fields(TimerProfile) if f.name != "name"]


def get_profile(name: str = "linux", **overrides: float) -> TimerProfile:
    try:
        base = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r} (choose from {', '.join(PROFILES)})") from None
    bad = [k for k in overrides if k not in OVERRIDABLE]
    if bad:
        raise ValueError(f"unknown timer {bad[0]!r} (timers: {', '.join(OVERRIDABLE)})")
    return replace(base, **{k: seconds(f"timer {k}", v, MAX_TIMER) for k, v in overrides.items()})


MAX_TIMER = 30 * 86400.0        # seconds: no TCP timer of any OS runs for a month


def seconds(what: str, value, most: float) -> float:
    """`value` as a finite, non-negative number no larger than `most`, or a ValueError naming `what`: NaN and
    infinity would reach the output as tokens that are not JSON, and negative times mean nothing."""
    import math

    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}={value!r}: not a number") from None
    if not math.isfinite(v) or v < 0 or v > most:
        raise ValueError(f"{what}={value!r}: must be a finite number from 0 to {most:g}")
    return v
