"""Data hand-off (issue 9 part 6): `--format parquet` for flows (analyze), transitions (timeline) and segments through
pyarrow, the optional extra `tcpfsm[arrow]`, read back with pandas and DuckDB and compared value by value
with the JSON of the same capture; `tcpfsm.analyze(...).to_pandas()` for notebooks."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import tcpfsm
from tcpfsm.cli import cli

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

ROOT = Path(__file__).resolve().parent.parent
MIXED = str(ROOT / "captures" / "kernel" / "concurrent_mixed.pcap")
IPV6 = str(ROOT / "captures" / "kernel" / "ipv6_close.pcap")
MIDSTREAM = str(ROOT / "captures" / "crafted" / "midstream.pcap")


def cmd(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.stdout


@pytest.mark.parametrize("cap", [MIXED, IPV6, MIDSTREAM], ids=["mixed", "ipv6", "midstream"])
def test_flows_parquet_holds_what_the_json_holds(cap, tmp_path):
    out = tmp_path / "flows.parquet"
    cmd("analyze", cap, "--format", "parquet", "-o", str(out))
    df = pd.read_parquet(out)
    flows = json.loads(cmd("analyze", cap, "--format", "json"))["flows"]
    assert list(df["id"]) == [f["id"] for f in flows]
    for row, f in zip(df.to_dict("records"), flows):
        assert (row["client_ip"], row["client_port"], row["server_ip"], row["server_port"]) == \
            (f["client"]["ip"], f["client"]["port"], f["server"]["ip"], f["server"]["port"])
        assert (row["first_ts"], row["last_ts"]) == (f["first_ts"], f["last_ts"])
        assert (row["packets_client"], row["packets_server"], row["bytes_client"], row["bytes_server"]) == \
            (f["packets"]["client"], f["packets"]["server"], f["bytes"]["client"], f["bytes"]["server"])
        assert (row["state_client"], row["state_server"]) == (f["states"]["client"], f["states"]["server"])
        alt = f["states"].get("alt", {})
        assert (_none(row["alt_client"]), _none(row["alt_server"])) == (alt.get("client"), alt.get("server"))
        assert (row["conn_state"], row["history"], bool(row["role_inferred"])) == \
            (f["conn_state"], f["history"], f["role_inferred"])
        assert list(row["anomalies"]) == sorted({a["kind"] for a in f["anomalies"]})
        assert row["first_time"].timestamp() == pytest.approx(f["first_ts"], abs=1e-6)


def _none(v):
    return None if v is None or (isinstance(v, float) and v != v) else v


def test_transitions_parquet_is_the_timeline_json_row_by_row(tmp_path):
    out = tmp_path / "tr.parquet"
    cmd("timeline", MIXED, "--format", "parquet", "-o", str(out))
    df = pd.read_parquet(out)
    doc = json.loads(cmd("timeline", MIXED, "--format", "json"))["flows"]
    want = [(f["id"], f["client"]["ip"], f["server"]["port"], t["ts"], t["at"], t["endpoint"], t["from"], t["to"],
             t["packet"], t["cause"], t["reason"], t["rfc_edge"]) for f in doc for t in f["transitions"]]
    got = [(r["flow"], r["client_ip"], r["server_port"], r["ts"], r["at"], r["endpoint"], r["from"], r["to"],
            None if r["packet"] != r["packet"] else int(r["packet"]), r["cause"], r["reason"], bool(r["rfc_edge"]))
           for r in df.to_dict("records")]
    assert got == want and len(got) == 2150


def test_timeline_filters_apply_to_parquet_too(tmp_path):
    out = tmp_path / "cw.parquet"
    cmd("timeline", MIXED, "--state", "CLOSE_WAIT", "--format", "parquet", "-o", str(out))
    df = pd.read_parquet(out)
    ids = {f["id"] for f in json.loads(cmd("timeline", MIXED, "--state", "CLOSE_WAIT", "--format", "json"))["flows"]}
    assert set(df["flow"]) == ids and len(ids) == 150


def test_duckdb_reads_it_back(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    fl, tr = tmp_path / "f.parquet", tmp_path / "t.parquet"
    cmd("analyze", MIXED, "--format", "parquet", "-o", str(fl))
    cmd("timeline", MIXED, "--format", "parquet", "-o", str(tr))
    flows = json.loads(cmd("analyze", MIXED, "--format", "json"))["flows"]
    got = dict(duckdb.sql(f"select state_server, count(*) from '{fl}' group by 1").fetchall())
    want: dict = {}
    for f in flows:
        want[f["states"]["server"]] = want.get(f["states"]["server"], 0) + 1
    assert got == want
    n = duckdb.sql(f"select count(*) from '{tr}' t join '{fl}' f on t.flow = f.id where t.\"to\" = 'TIME_WAIT'"
                   ).fetchall()[0][0]
    assert n == sum(t["to"] == "TIME_WAIT" for f in flows for t in f["transitions"])


def test_streamed_parquet_equals_the_whole_file_one(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    cmd("analyze", MIXED, "--format", "parquet", "-o", str(a))
    cmd("analyze", MIXED, "--format", "parquet", "--stream", "-o", str(b))
    x = pd.read_parquet(a).sort_values("id").reset_index(drop=True)
    y = pd.read_parquet(b).sort_values("id").reset_index(drop=True)
    assert x.drop(columns="anomalies").equals(y.drop(columns="anomalies"))
    assert [list(v) for v in x["anomalies"]] == [list(v) for v in y["anomalies"]]


def test_to_pandas_for_notebooks():
    an = tcpfsm.analyze(MIXED)
    flows = an.to_pandas()
    assert len(flows) == len(an.flows) and (flows["state_server"] == "CLOSE_WAIT").sum() == \
        sum(f.conn.server.state.value == "CLOSE_WAIT" for f in an.flows)
    tr = an.to_pandas("transitions")
    assert len(tr) == sum(len(f.transitions) for f in an.flows)
    with pytest.raises(ValueError):
        an.to_pandas("segments")


def test_without_pyarrow_it_is_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    from tcpfsm.cli import main
    monkeypatch.setitem(sys.modules, "pyarrow", None)            # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SystemExit) as e:
        main(["analyze", MIXED, "--format", "parquet", "-o", str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "tcpfsm[arrow]" in err and len(err.strip().splitlines()) == 1


# -- segments (issue 8 part 1's view, issue 9 part 6's hand-off) -----------------------------------------------
LOSS = str(ROOT / "captures" / "path" / "loss_bulk.pcap")
ZERO_WINDOW = str(ROOT / "captures" / "path" / "zero_window.pcap")


@pytest.mark.parametrize("cap", [LOSS, ZERO_WINDOW, IPV6], ids=["loss", "zero_window", "ipv6"])
def test_segments_parquet_holds_what_the_json_holds(cap, tmp_path):
    """The JSON contract's columns, row by row, `analysis` as a list of strings; the duplicate ACK numbers
    are the CSV's."""
    out = tmp_path / "seg.parquet"
    cmd("segments", cap, "--format", "parquet", "-o", str(out))
    df = pd.read_parquet(out)
    want = json.loads(cmd("segments", cap, "--format", "json"))["segments"]
    keys = ["packet", "ts", "flow", "endpoint", "flags", "seq", "ack", "len", "win"]
    assert list(df.columns[:10]) == keys + ["analysis"]
    got = df.to_dict("records")
    assert len(got) == len(want) > 10
    for row, rec in zip(got, want):
        assert {k: row[k] for k in keys} == {k: rec[k] for k in keys}
        assert list(row["analysis"]) == rec["analysis"]
        assert row["time"].timestamp() == pytest.approx(rec["ts"], abs=1e-6)
    import csv
    import io
    dup = [int(r["duplicate_ack_num"] or 0) for r in csv.DictReader(io.StringIO(cmd("segments", cap, "--format", "csv")))]
    assert list(df["duplicate_ack_num"]) == dup
    assert str(df["duplicate_ack_num"].dtype) == "int64"
    # the flags made it through (not a file of empty lists): the two path recordings carry some
    assert any(len(a) for a in df["analysis"]) == (cap != IPV6)


def test_segments_parquet_filters_and_row_groups(tmp_path):
    """--flow/--host select the same rows as in JSON; a file written in many row groups reads back the same."""
    import pyarrow.parquet as pq
    from tcpfsm.path.views import segment_rows
    from tcpfsm.render.output import Output
    from tcpfsm.render.tabular import write_segments_parquet
    out = tmp_path / "f.parquet"
    cmd("segments", MIXED, "--host", "10.77.15.1", "--port", "37614", "--format", "parquet", "-o", str(out))
    want = json.loads(cmd("segments", MIXED, "--host", "10.77.15.1", "--port", "37614", "--format", "json"))
    df = pd.read_parquet(out)
    assert list(df["packet"]) == [s["packet"] for s in want["segments"]] and set(df["flow"]) == {3}
    an = tcpfsm.analyze(MIXED, keep_segments=True)
    small = tmp_path / "small.parquet"
    with Output(str(small)) as o:
        n = write_segments_parquet(((r, d) for r, d, _, _ in segment_rows(an)), o, chunk=500)
    whole = tmp_path / "whole.parquet"
    cmd("segments", MIXED, "--format", "parquet", "-o", str(whole))
    assert n == 2700 and pq.ParquetFile(small).num_row_groups == 6
    assert pd.read_parquet(small).equals(pd.read_parquet(whole))


def test_duckdb_counts_retransmissions_per_side_like_the_json(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "seg.parquet"
    cmd("segments", LOSS, "--format", "parquet", "-o", str(out))
    got = dict(duckdb.sql(f"select endpoint, count(*) from '{out}' where list_contains(analysis, 'retransmission') "
                          f"group by 1").fetchall())
    want: dict = {}
    for s in json.loads(cmd("segments", LOSS, "--format", "json"))["segments"]:
        if "retransmission" in s["analysis"]:
            want[s["endpoint"]] = want.get(s["endpoint"], 0) + 1
    assert got == want and sum(got.values()) == 17


def test_segments_parquet_without_pyarrow_is_one_line_naming_the_extra(monkeypatch, capsys):
    from tcpfsm.cli import main
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SystemExit) as e:
        main(["segments", LOSS, "--format", "parquet", "-o", "/dev/null"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "tcpfsm[arrow]" in err and len(err.strip().splitlines()) == 1


def test_to_pandas_segments_is_the_parquet_file(tmp_path):
    """A notebook gets the same segment rows as `segments --format parquet`, given keep_segments=True."""
    out = tmp_path / "seg.parquet"
    cmd("segments", LOSS, "--format", "parquet", "-o", str(out))
    df = tcpfsm.analyze(LOSS, keep_segments=True).to_pandas("segments")
    assert df.equals(pd.read_parquet(out)) and len(df) == 2188
    with pytest.raises(ValueError, match="keep_segments=True"):
        tcpfsm.analyze(LOSS).to_pandas("segments")
