"""The Python API: `tcpfsm.analyze(path, profile=...)` and `tcpfsm.parse_time`, on real captures."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import tcpfsm
from tcpfsm.fsm import State

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
NORMAL = str(CAPTURES / "kernel" / "normal_close_client.pcap")
WINDOWS_TW = str(CAPTURES / "crafted" / "windows_tw.pcap")
NS = 1_000_000_000
START = 1_767_225_600 * NS          # 2026-01-01T00:00:00Z, the crafted captures' first record

_cache: dict = {}


def analysis(path: str, profile: str = "linux"):
    if (path, profile) not in _cache:
        _cache[path, profile] = tcpfsm.analyze(path, profile=profile)
    return _cache[path, profile]


# -- the Analysis object ------------------------------------------------------------------------------------

def test_analyze_normal_close_gives_one_flow_client_time_wait_server_closed():
    an = analysis(NORMAL)
    assert isinstance(an, tcpfsm.Analysis)
    assert len(an.flows) == 1
    f = an.flows[0]
    assert (f.client, f.server) == ("10.77.1.1:51700", "10.77.1.2:8080")
    assert (f.state("client"), f.state("server")) == (State.TIME_WAIT, State.CLOSED)


def test_analyze_normal_close_has_no_findings():
    assert analysis(NORMAL).findings == []


def test_analyze_last_ack_capture_finds_last_ack_unacked():
    an = analysis(str(CAPTURES / "kernel" / "last_ack.pcap"))
    kinds = {f.kind for f in an.findings}
    assert "last_ack_unacked" in kinds
    finding = next(f for f in an.findings if f.kind == "last_ack_unacked")
    assert finding.severity == "high" and finding.flows == [1] and finding.message


def test_netstat_returns_sockets_of_both_hosts_at_an_offset():
    snap = analysis(NORMAL).netstat("+1.8s")
    assert isinstance(snap, tcpfsm.Snapshot)
    rows = {(s.host, s.local, s.remote, s.state, s.flow) for s in snap.sockets}
    assert rows == {
        ("10.77.1.1", "10.77.1.1:51700", "10.77.1.2:8080", State.FIN_WAIT_2, 1),
        ("10.77.1.2", "10.77.1.2:8080", "0.0.0.0:*", State.LISTEN, None),
        ("10.77.1.2", "10.77.1.2:8080", "10.77.1.1:51700", State.CLOSE_WAIT, 1),
    }


def test_netstat_host_filter_keeps_only_that_hosts_sockets():
    snap = analysis(NORMAL).netstat("+1.8s", host="10.77.1.1")
    assert [(s.host, s.state) for s in snap.sockets] == [("10.77.1.1", State.FIN_WAIT_2)]


def test_netstat_before_the_first_packet_is_empty():
    an = analysis(NORMAL)
    assert an.netstat(an.start / NS - 1).sockets == []


def test_states_counts_per_host_every_interval():
    an = analysis(NORMAL)
    rows = an.states(1.0)
    assert [t for t, _ in rows] == [an.start, an.start + NS, an.start + 2 * NS]
    t, per_host = rows[2]
    assert per_host["10.77.1.1"] == Counter({State.FIN_WAIT_2: 1})
    assert per_host["10.77.1.2"] == Counter({State.CLOSE_WAIT: 1})


def test_states_host_filter():
    rows = analysis(NORMAL).states(1.0, host="10.77.1.2")
    assert all(set(per_host) <= {"10.77.1.2"} for _, per_host in rows)
    assert any(per_host for _, per_host in rows)


def test_analyze_rejects_an_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile"):
        tcpfsm.analyze(NORMAL, profile="nosuch")


def test_analyze_rejects_an_unknown_threshold():
    with pytest.raises(ValueError, match="unknown threshold"):
        tcpfsm.analyze(NORMAL, thresholds={"nosuch": 1})


def test_timer_override_shortens_time_wait():
    an = tcpfsm.analyze(NORMAL, timers={"time_wait": 30})
    tw = next(t for t in an.flows[0].transitions if t.new is State.TIME_WAIT)
    assert an.profile.time_wait == 30.0
    assert [s.state for s in an.netstat(tw.ts / NS + 29, host="10.77.1.1").sockets] == [State.TIME_WAIT]
    assert an.netstat(tw.ts / NS + 31, host="10.77.1.1").sockets == []


# -- profiles: windows_tw -----------------------------------------------------------------------------------

def _client_row(an, at: str):
    return [s.state for s in an.netstat(at, host="10.0.0.1").sockets
            if (s.local, s.remote) == ("10.0.0.1:50000", "10.0.0.2:80")]


def test_linux_profile_time_wait_ends_after_60s():
    an = analysis(WINDOWS_TW, "linux")
    assert _client_row(an, "+30s") == [State.TIME_WAIT]
    assert _client_row(an, "+100s") == []
    assert an.flows[0].state("client") is State.CLOSED
    expiry = an.flows[0].transitions[-1]
    assert (expiry.old, expiry.new, expiry.cause) == (State.TIME_WAIT, State.CLOSED, "timer:2MSL")
    tw = next(t for t in an.flows[0].transitions if t.new is State.TIME_WAIT)
    assert expiry.ts - tw.at == 60 * NS        # 2MSL from when the last FIN reached the client


def test_windows_profile_time_wait_lasts_240s():
    an = analysis(WINDOWS_TW, "windows")
    assert an.profile.name == "windows" and an.profile.time_wait == 240.0
    assert _client_row(an, "+100s") == [State.TIME_WAIT]
    assert _client_row(an, "+200.0414s") == [State.TIME_WAIT]
    assert an.flows[0].state("client") is State.TIME_WAIT
    tw = next(t for t in an.flows[0].transitions if t.new is State.TIME_WAIT)
    assert _client_row(an, tw.ts / NS + 239.9) == [State.TIME_WAIT]
    assert _client_row(an, tw.ts / NS + 240.1) == []


# -- parse_time -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,expected", [
    ("+12.5s", START + 12_500_000_000),
    ("+500ms", START + 500_000_000),
    ("+2m", START + 120 * NS),
    ("+1h", START + 3600 * NS),
    ("+3", START + 3 * NS),
    ("+.5s", START + 500_000_000),
    ("1767225612", START + 12 * NS),
    (1767225612, START + 12 * NS),
    ("2026-01-01T00:00:12Z", START + 12 * NS),
    ("2026-01-01T01:00:12+01:00", START + 12 * NS),
    ("  +1s  ", START + NS),
])
def test_parse_time_accepts(spec, expected):
    assert tcpfsm.parse_time(spec, START) == expected


@pytest.mark.parametrize("spec", ["1767225612.25", 1767225612.25, "2026-01-01T00:00:12.25Z"])
def test_parse_time_accepts_fractional_seconds(spec):
    assert tcpfsm.parse_time(spec, START) == START + 12_250_000_000


def test_parse_time_epoch_string_with_microseconds_is_exact():
    assert tcpfsm.parse_time("1795468753.965044", 0) == 1_795_468_753_965_044_000


def test_parse_time_iso_with_microseconds_is_exact():
    assert tcpfsm.parse_time("2026-11-23T21:19:13.965044Z", 0) == 1_795_468_753_965_044_000


def test_netstat_at_a_transition_time_from_the_json_output_shows_the_new_state():
    an = analysis(str(CAPTURES / "kernel" / "close_wait_leak.pcap"))
    t = next(t for t in an.flows[0].transitions if t.endpoint == "server" and t.new is State.SYN_RECEIVED)
    at = repr(round(t.ts / NS, 6))                   # "1795468753.965044", as `analyze --format json` prints it
    rows = [s.state for s in an.netstat(at, host=an.flows[0].server_ip, listening=False).sockets]
    assert rows == [State.SYN_RECEIVED]


@pytest.mark.parametrize("spec", ["inf", "1e300"])
def test_parse_time_rejects_infinite_times_with_value_error(spec):
    with pytest.raises(ValueError, match="bad time"):
        tcpfsm.parse_time(spec, START)


def test_parse_time_hh_mm_ss_is_on_the_captures_local_day():
    from datetime import datetime
    day = datetime.fromtimestamp(START / NS).astimezone()
    at_1305 = int(day.replace(hour=13, minute=5, second=0, microsecond=0).timestamp()) * NS
    assert tcpfsm.parse_time("13:05:07.25", START) == at_1305 + 7_250_000_000
    assert tcpfsm.parse_time("13:05", START) == at_1305


def test_parse_time_naive_iso_is_local_time():
    from datetime import datetime
    want = int(datetime(2026, 1, 1, 0, 0, 12).astimezone().timestamp()) * NS
    assert tcpfsm.parse_time("2026-01-01T00:00:12", START) == want


@pytest.mark.parametrize("spec", ["abc", "", "+", "+-1s", "+1x", "12s", "25:99", "2026-13-01T00:00:00Z",
                                  "1s ago", "+1.5.2s", "nan"])
def test_parse_time_rejects_garbage(spec):
    with pytest.raises(ValueError, match="bad time"):
        tcpfsm.parse_time(spec, START)


def test_analysis_time_is_relative_to_the_capture_start():
    an = analysis(WINDOWS_TW)
    assert an.start == START
    assert an.time("+1s") == START + NS


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_api_refuses_timers_and_thresholds_that_are_not_finite_non_negative(bad):
    with pytest.raises(ValueError, match="finite number"):
        tcpfsm.analyze(str(WINDOWS_TW), timers={"time_wait": bad})
    with pytest.raises(ValueError, match="finite number"):
        tcpfsm.analyze(str(WINDOWS_TW), thresholds={"stuck_close_wait": bad})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0, -1.0, 1e-12])
def test_api_states_refuses_an_interval_it_cannot_honour(bad):
    an = tcpfsm.analyze(WINDOWS_TW)
    with pytest.raises(ValueError, match="interval"):
        an.states(bad)


# -- times at the end of int64 (found by `make fuzz`, 2026-12-07) ------------------------------------------------
REGRESSIONS = Path(__file__).resolve().parent / "regressions"


def test_parse_time_is_held_to_int64():
    assert tcpfsm.parse_time("+10m", (1 << 63) - 1000) == (1 << 63) - 1
    assert tcpfsm.parse_time("1e11", 0) == (1 << 63) - 1


@pytest.mark.filterwarnings("error")         # (numpy's int64 overflow is only a RuntimeWarning)
@pytest.mark.parametrize("name, end", [("last_ts_at_int64_end.pcap", None),
                                       ("first_ts_near_int64_end.pcap", "+10m"),
                                       ("handshake_near_int64_end.pcap", None)])
def test_capture_times_at_the_end_of_int64_are_analysed(name, end):
    """Damaged captures whose times the decoders clamp near int64's end: the machines' `alt` times (rule 6's
    "from the last packet on") and an --end offset from the first packet must saturate, not overflow."""
    an = tcpfsm.analyze(str(REGRESSIONS / name), end=end, capture_point="server", profile="windows")
    assert an.summary()["flows"] >= 1
