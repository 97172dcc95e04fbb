"""Zeek-compatible connection summaries: conn_state, history, orientation, splitting, conn.log output.

Expectations live next to the crafted captures (captures/zeek/*.expect.json, derived from Zeek's
source, see captures/zeek/README.md)."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from tcpfsm.capture.reader import open_capture
from tcpfsm.render.zeek import FIELDS, write_conn_log
from tcpfsm.zeek import ZeekTracker, conn_state_of, zeek_summary_for_flows
from tcpfsm.zeek.tracker import (CLOSED, ESTABLISHED, INACTIVE, PARTIAL, RESET, SYN_ACK_SENT, SYN_SENT,
                                 make_uid)

ZDIR = Path(__file__).resolve().parent.parent / "captures" / "zeek"
EXPECTS = sorted(ZDIR.glob("*.expect.json"))
ALL_STATES = {"S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"}


def conns_of(path):
    zt = ZeekTracker()
    for b in open_capture(str(path)).batches(7):     # small batches: state must carry across them
        zt.feed_batch(b)
    return zt.finish()


def _hp(h, p):
    return f"[{h}]:{p}" if ":" in h else f"{h}:{p}"


@pytest.mark.parametrize("expect", EXPECTS, ids=lambda p: p.name.split(".")[0])
def test_crafted_capture_matches_zeek_rules(expect):
    doc = json.loads(expect.read_text())
    got = conns_of(ZDIR / doc["capture"])
    assert len(got) == len(doc["conns"]), [(_hp(z.orig_h, z.orig_p), z.conn_state, z.history) for z in got]
    for z, e in zip(got, doc["conns"]):
        where = f"{doc['capture']} {e['orig']} -> {e['resp']}"
        assert (_hp(z.orig_h, z.orig_p), _hp(z.resp_h, z.resp_p)) == (e["orig"], e["resp"]), where
        assert z.conn_state == e["conn_state"], where
        assert z.history == e["history"], where
        for k in ("orig_bytes", "resp_bytes", "missed_bytes", "orig_pkts", "resp_pkts"):
            if k in e:
                assert getattr(z, k) == e[k], f"{where} {k}"


def test_every_conn_state_value_is_covered_by_a_capture():
    seen = {c["conn_state"] for p in EXPECTS for c in json.loads(p.read_text())["conns"]}
    assert seen >= ALL_STATES


# ---- conn_state decision order (main.zeek), independent of captures

@pytest.mark.parametrize("os_,rs,osz,rsz,hist,want", [
    (SYN_SENT, RESET, 0, 0, "Sr", "REJ"),              # responder reset first
    (RESET, RESET, 0, 0, "SrR", "REJ"),                # both reset, no payload either way
    (RESET, RESET, 5, 0, "ShADRr", "RSTR"),            # responder's reset wins over the originator's
    (PARTIAL, RESET, 0, 0, "^hr", "RSTRH"),
    (RESET, INACTIVE, 0, 0, "SR", "RSTOS0"),
    (RESET, INACTIVE, 0, 0, "^SR", "RSTOS0"),
    (RESET, INACTIVE, 0, 0, "SAR", "OTH"),             # RSTOS0 needs no H A F G I Q before the R
    (RESET, INACTIVE, 0, 0, "R", "OTH"),               # a lone RST
    (RESET, PARTIAL, 0, 0, "DdR", "OTH"),
    (RESET, ESTABLISHED, 0, 0, "ShAR", "RSTO"),
    (CLOSED, CLOSED, 0, 0, "DdFf", "SF"),              # midstream with both FINs is SF
    (CLOSED, INACTIVE, 0, 0, "DF", "SH"),              # SH needs no SYN
    (CLOSED, ESTABLISHED, 0, 0, "ShAF", "S2"),
    (PARTIAL, CLOSED, 0, 0, "^df", "SHR"),
    (ESTABLISHED, CLOSED, 0, 0, "ShAf", "S3"),
    (SYN_SENT, INACTIVE, 0, 0, "S", "S0"),
    (SYN_ACK_SENT, INACTIVE, 0, 0, "H", "OTH"),
    (ESTABLISHED, ESTABLISHED, 0, 0, "ShA", "S1"),
    (PARTIAL, PARTIAL, 0, 0, "Dd", "OTH"),
])
def test_conn_state_decision_order(os_, rs, osz, rsz, hist, want):
    assert conn_state_of(os_, rs, osz, rsz, hist) == want


def test_scaled_history_letters_repeat_at_10():
    z = conns_of(ZDIR / "zeek_history.pcap")[0]
    assert z.history.count("T") == 2 and z.history.count("w") == 2   # 1st and 10th occurrence


def test_uid_is_deterministic_and_zeek_shaped():
    a = conns_of(ZDIR / "zeek_states.pcap")
    b = conns_of(ZDIR / "zeek_states.pcap")
    assert [z.uid for z in a] == [z.uid for z in b]
    assert len({z.uid for z in a}) == len(a)
    assert all(re.fullmatch(r"C[0-9A-Za-z]{12,18}", z.uid) for z in a)
    assert make_uid(b"k", 1, 2) != make_uid(b"k", 1, 3)


def test_batches_size_does_not_change_the_result():
    one = ZeekTracker()
    for b in open_capture(str(ZDIR / "zeek_splits.pcap")).batches(65536):
        one.feed_batch(b)
    assert [(z.uid, z.history, z.conn_state) for z in one.finish()] == \
        [(z.uid, z.history, z.conn_state) for z in conns_of(ZDIR / "zeek_splits.pcap")]


# ---- conn.log output

def _log(fmt):
    fh = io.StringIO()
    write_conn_log(conns_of(ZDIR / "zeek_states.pcap"), fh, fmt=fmt, open_time=0, close_time=0)
    return fh.getvalue()


def test_tsv_header_and_unset_fields():
    text = _log("tsv")
    lines = text.splitlines()
    assert lines[0] == "#separator \\x09"
    assert lines[1:5] == ["#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn"]
    assert lines[5].startswith("#open\t") and lines[-1].startswith("#close\t")
    assert lines[6] == "#fields\t" + "\t".join(FIELDS)
    assert lines[7].startswith("#types\ttime\tstring\taddr\tport\taddr\tport\tenum")
    rows = [ln.split("\t") for ln in lines[8:-1]]
    assert all(len(r) == len(FIELDS) for r in rows)
    rej = next(r for r in rows if r[11] == "REJ")
    assert rej[6] == "tcp" and rej[7] == "-" and rej[12] == "-" and rej[20] == "-"
    assert re.fullmatch(r"\d+\.\d{6}", rej[0]) and re.fullmatch(r"\d+\.\d{6}", rej[8])


def test_json_log_style():
    recs = [json.loads(ln) for ln in _log("json").splitlines()]
    sf = next(r for r in recs if r["conn_state"] == "SF")
    assert sf["id.orig_h"] == "10.1.0.1" and sf["id.resp_p"] == 5003 and sf["proto"] == "tcp"
    assert sf["orig_bytes"] == 100 and sf["resp_bytes"] == 300 and sf["history"] == "ShADdFaf"
    assert "service" not in sf and "local_orig" not in sf         # unset fields are left out
    s0 = next(r for r in recs if r["conn_state"] == "S0")
    assert isinstance(s0["ts"], float) and s0["orig_pkts"] == 2


def test_zat_reads_our_conn_log(tmp_path):
    zat = pytest.importorskip("zat")
    from zat.log_to_dataframe import LogToDataFrame
    path = tmp_path / "conn.log"
    path.write_text(_log("tsv"))
    df = LogToDataFrame().create_dataframe(str(path))
    assert len(df) == 11
    assert set(df["conn_state"]) >= {"S0", "SF", "REJ", "RSTOS0"}
    assert {"id.orig_h", "id.resp_p", "history", "orig_ip_bytes"} <= set(df.columns)
    assert int(df[df["conn_state"] == "SF"]["resp_bytes"].iloc[0]) == 300


# ---- mapping onto tcpfsm flows

def test_summary_for_tcpfsm_flows():
    from tcpfsm.api import analyze
    path = ZDIR / "zeek_splits.pcap"
    an = analyze(str(path))
    conns = conns_of(path)
    summary = zeek_summary_for_flows(an.flows, conns)
    assert set(summary) <= {f.id for f in an.flows}
    assert len(summary) >= len(an.flows) - 1
    for f in an.flows:
        if f.id in summary:
            z = next(z for z in conns if f.id in z.flows)
            assert summary[f.id] == (z.conn_state, z.history)
            assert {f.client_port, f.server_port} == {z.orig_p, z.resp_p}
