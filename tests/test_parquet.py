"""Data hand-off (issue 9 part 6): `--format parquet` for flows (analyze) and transitions (timeline) through
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
