"""The HTML incident report (issue 9 part 5), opened in headless Chromium as a reader would open the
attachment: no script errors, every section present, one chart per host (`<svg data-host>`), one sequence
diagram per connection that matters (`<svg data-flow>`) with the states beside the endpoint lines, a
hover read-out that shows the counts, a screenshot that is not blank; nothing fetched from the network;
and a page that stays small for thousands of connections.

Chromium is Debian's `chromium` (`make test` installs it). Screenshots are written under
tests/screenshots/ (git-ignored) by this run.
"""
from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

import tcpfsm
from tcpfsm.render.report import html_report

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "captures" / "kernel"
MIXED = KERNEL / "concurrent_mixed.pcap"
SHOTS = ROOT / "tests" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ["summary", "findings", "hosts", "paths", "flows", "transitions", "capture"]
PATH = ROOT / "captures" / "path"
LOSS = PATH / "loss_bulk.pcap"

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it)")

# Run inside the page: errors are collected from the first line of <head>; after load, the page's facts are
# written into <pre id="__probe"> for --dump-dom to carry out.
CATCH = "<script>window.__errs=[];addEventListener('error',function(e){__errs.push(String(e.message))});</script>"
PROBE = """<script>addEventListener('load',function(){try{
var r={errors:__errs,sections:[],hosts:[],flows:[],pairs:[],hover:null,seqStates:0,width:document.body.scrollWidth};
document.querySelectorAll('section[id]').forEach(function(s){r.sections.push(s.id)});
document.querySelectorAll('svg[data-host]').forEach(function(s){var b=s.getBoundingClientRect();
  r.hosts.push([s.getAttribute('data-host'),b.width,b.height])});
document.querySelectorAll('svg[data-flow]').forEach(function(s){var b=s.getBoundingClientRect();
  r.flows.push([s.getAttribute('data-flow'),b.width,b.height,s.querySelectorAll('text.st').length])});
document.querySelectorAll('svg[data-pair]').forEach(function(s){var b=s.getBoundingClientRect(),n={client:0,server:0};
  s.querySelectorAll('rect.bar').forEach(function(x){n[x.getAttribute('data-dir')]+=+x.getAttribute('data-count')});
  r.pairs.push([s.getAttribute('data-pair'),b.width,b.height,n.client,n.server,b.top+scrollY,b.bottom+scrollY,
                s.querySelectorAll('circle').length])});
var band=document.querySelector('svg[data-host] .hov:nth-of-type(200)')||document.querySelector('svg[data-host] .hov');
if(band){band.dispatchEvent(new MouseEvent('mouseenter'));
  r.hover=[band.querySelector('title').textContent,band.ownerSVGElement.querySelector('.readout').textContent]}
}catch(e){__errs.push('probe: '+e)}
var p=document.createElement('pre');p.id='__probe';p.textContent=JSON.stringify(r);document.body.appendChild(p);});
</script>"""


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium with a profile of its own (removed after), offline: any fetch would fail."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="tcpfsm-chromium-") as profile:
        return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
                               "--proxy-server=127.0.0.1:9", *args], capture_output=True, text=True,
                              timeout=timeout)


def probe(page: Path, tmp_path: Path) -> dict:
    html = page.read_text()
    test = tmp_path / "probe.html"
    test.write_text(html.replace("<head>", "<head>" + CATCH, 1).replace("</body>", PROBE + "</body>", 1))
    p = chromium("--virtual-time-budget=5000", "--dump-dom", test.as_uri())
    m = re.search(r'<pre id="__probe">(.*?)</pre>', p.stdout, re.S)
    assert m, p.stderr[-2000:]
    return json.loads(m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB(A) PNG (what Chromium writes) into rows of raw pixel bytes."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, [bytes(r) for r in rows], bpp


@pytest.fixture(scope="module")
def mixed_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "mixed.html"
    from tcpfsm.cli import main
    main(["report", str(MIXED), "-o", str(out)])          # the command a user runs; returns on success
    return out


# -- without a browser -------------------------------------------------------------------------------------
class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        for k, v in attrs:
            if k in ("src", "href", "xlink:href") and v and not v.startswith(("#", "data:")):
                self.urls.append(v)


def test_report_is_self_contained_and_names_every_host_and_flow(mixed_report):
    page = mixed_report.read_text()
    t = Tags()
    t.feed(page)
    assert t.urls == []                                    # nothing to fetch: works from a mail attachment
    assert not any(tag in ("link", "img", "iframe") for tag, _ in t.tags)
    an = tcpfsm.analyze(str(MIXED))
    hosts = [a["data-host"] for tag, a in t.tags if tag == "svg" and "data-host" in a]
    assert sorted(hosts) == sorted({f.client_ip for f in an.flows} | {f.server_ip for f in an.flows})
    flows = [int(a["data-flow"]) for tag, a in t.tags if tag == "svg" and "data-flow" in a]
    from tcpfsm.render.text import flows_that_explain
    order = flows_that_explain(an)
    assert flows == [f.id for f in order[:10]]
    # one of each story first: the four groups of the mixed capture (three piles, the aborts), then again
    ends = [(f.conn.client.state, f.conn.server.state) for f in order[:4]]
    assert len(set(ends)) == 4 and ends == [(f.conn.client.state, f.conn.server.state) for f in order[4:8]]
    for tag, a in t.tags:                                  # every in-page link lands on an element
        if tag == "a" and a.get("href", "").startswith("#"):
            assert f"id='{a['href'][1:]}'" in page, a["href"]


def test_sequence_diagram_draws_every_segment_and_each_state_beside_its_endpoint():
    """Flow 3 of the mixed capture: 8 segments, one arrow each with tshark's relative numbers, the
    states written beside the right line."""
    an = tcpfsm.analyze(str(MIXED))
    f = an.flow(3)
    from tcpfsm.render import report, svg
    segs, more = report.flow_segments(an, [f])[3]
    out = subprocess.run(["tshark", "-r", str(MIXED), "-Y",
                          f"tcp.port=={f.client_port} && ip.addr=={f.server_ip}", "-T", "fields",
                          "-e", "frame.number", "-e", "tcp.seq", "-e", "tcp.len"], capture_output=True, text=True)
    ref = [tuple(map(int, x.split("\t"))) for x in out.stdout.split("\n") if x.strip()]
    assert more == 0 and [(s[0], s[6]) for s in segs] == [(n, ln) for n, _, ln in ref]
    pic = svg.sequence_diagram(f, segs, more)
    labels = re.findall(r'<text x="[\d.]+" y="[\d.]+" text-anchor="middle">([^<]+)</text>', pic)
    assert [int(re.search(r"seq=(\d+)", x).group(1)) for x in labels] == [seq for _, seq, _ in ref]
    states = re.findall(r'<text x="(\d+)" y="[\d.]+" text-anchor="(end|start)" class="st[^"]*"><title>([a-z]+):',
                        pic)
    assert states and all((anchor == "end") == (who == "client") for _, anchor, who in states)
    assert len(states) == len([t for t in f.transitions])


@needs_chromium
def test_chromium_opens_it_without_errors_with_every_section(mixed_report, tmp_path):
    r = probe(mixed_report, tmp_path)
    assert r["errors"] == []
    assert r["sections"] == SECTIONS
    assert len(r["hosts"]) == 2 and all(w > 300 and h > 100 for _, w, h in r["hosts"])
    assert len(r["flows"]) == 10 and all(w > 300 and h > 100 and n >= 4 for _, w, h, n in r["flows"])
    assert [p[0] for p in r["pairs"]] == ["10.77.15.1-10.77.15.2"] and r["pairs"][0][1] > 300
    assert r["pairs"][0][7] > 0                    # RTT dots drawn
    title, shown = r["hover"]
    assert shown == title and re.search(r"at \d\d:\d\d:\d\d\.\d{3}: ", title)


@needs_chromium
def test_screenshot_is_not_blank(mixed_report):
    SHOTS.mkdir(exist_ok=True)
    shot = SHOTS / "report_mixed.png"
    shot.unlink(missing_ok=True)
    chromium(f"--screenshot={shot}", "--window-size=1280,2400", mixed_report.as_uri())
    w, h, rows, bpp = png_pixels(shot)
    assert (w, h) == (1280, 2400)
    colours = set()
    inked = 0
    for row in rows[::8]:
        for x in range(0, w * bpp, bpp * 8):
            px = row[x:x + 3]
            colours.add(px)
            inked += px != b"\xff\xff\xff"
    assert len(colours) > 20 and inked > 0.03 * (w // 8) * (h // 8)


def _scaled_capture(path: Path, copies: int) -> None:
    """`copies` copies of the mixed capture's real packets, each moved to its own pair of addresses
    (10.<77+k>.15.x, IP header checksum recomputed) and 5 s later: thousands of distinct connections."""
    data = MIXED.read_bytes()
    hdr, body = data[:24], data[24:]
    out = [hdr]
    for k in range(copies):
        pos = 0
        while pos < len(body):
            sec, usec, incl, orig = struct.unpack("<IIII", body[pos:pos + 16])
            pkt = bytearray(body[pos + 16:pos + 16 + incl])
            pos += 16 + incl
            if len(pkt) >= 34 and pkt[12:14] == b"\x08\x00":
                for off in (26, 30):                      # src, dst: second octet
                    pkt[off + 1] = (77 + k) & 255
                ihl = (pkt[14] & 15) * 4
                pkt[24:26] = b"\0\0"
                s = sum(struct.unpack(f">{ihl // 2}H", bytes(pkt[14:14 + ihl])))
                s = (s & 0xFFFF) + (s >> 16)
                s = (s & 0xFFFF) + (s >> 16)
                pkt[24:26] = struct.pack(">H", ~s & 0xFFFF)
            out.append(struct.pack("<IIII", sec + 5 * k, usec, incl, orig) + bytes(pkt))
    path.write_bytes(b"".join(out))


def test_page_stays_small_for_thousands_of_connections(tmp_path):
    cap = tmp_path / "scaled.pcap"
    _scaled_capture(cap, 12)
    an = tcpfsm.analyze(str(cap))
    assert len(an.flows) == 3600
    page = html_report(an, max_flows=10)
    size = len(page.encode())
    assert size < 3 << 20, size
    assert page.count("data-host=") == 12 and page.count("data-flow=") == 10
    assert "Other hosts (12)" in page and "Other connections named by findings (" in page


@needs_chromium
def test_it_prints(mixed_report, tmp_path):
    """Printable: Chromium's print to PDF gives several pages, the charts and diagrams kept as vectors."""
    pdf = tmp_path / "report.pdf"
    chromium(f"--print-to-pdf={pdf}", "--no-pdf-header-footer", mixed_report.as_uri())
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert 3 <= pages <= 40, pages


def test_host_charts_have_a_real_clock_axis_and_counts_that_match_states():
    """The x axis is labelled with wall-clock times inside the capture, evenly spaced; the hover values are
    `tcpfsm states` counts at those instants."""
    from datetime import datetime
    an = tcpfsm.analyze(str(MIXED))
    page = html_report(an)
    chart = re.search(r'<svg[^>]*data-host="10\.77\.15\.2".*?</svg>', page, re.S).group(0)
    labels = re.findall(r'text-anchor="middle">(\d\d:\d\d:\d\d(?:\.\d+)?)</text>', chart)
    day = datetime.fromtimestamp(an.start / 1e9).date()
    secs = [datetime.combine(day, datetime.strptime(x, "%H:%M:%S").time()).timestamp() for x in labels]
    assert len(secs) >= 3 and an.start / 1e9 <= secs[0] and secs[-1] <= an.end / 1e9
    assert len({round(b - a, 6) for a, b in zip(secs, secs[1:])}) == 1
    tips = re.findall(r"<title>10\.77\.15\.2 at ([\d:.]+): ([^<]*)</title>", chart)
    peak = max(int(m.group(1)) for _, t in tips for m in re.finditer(r"CLOSE_WAIT (\d+)", t))
    from tcpfsm.fsm import State
    assert peak == an.occupancy.peaks()[("10.77.15.2", State.CLOSE_WAIT)][0] == 100


def test_many_hosts_busiest_drawn_first(tmp_path):
    cap = tmp_path / "scaled.pcap"
    _scaled_capture(cap, 14)
    an = tcpfsm.analyze(str(cap))
    page = html_report(an)
    drawn = re.findall(r'data-host="([^"]+)"', page)
    held = {}
    for (h, _), (n, _, _) in an.occupancy.peaks().items():
        held[h] = max(held.get(h, 0), n)
    assert len(drawn) == 12 and len(held) == 28
    assert [held[h] for h in drawn] == sorted(held.values(), reverse=True)[:12]


# -- path health per host pair (issue 8 part 3) ---------------------------------------------------------------
def _pair_bars(page: str) -> dict[str, dict[str, int]]:
    """Per <svg data-pair>, the retransmissions its bars carry, per direction."""
    out = {}
    for m in re.finditer(r'<svg[^>]*data-pair="([^"]+)".*?</svg>', page, re.S):
        n = {"client": 0, "server": 0}
        for side, count in re.findall(r'<rect class="bar" data-dir="(\w+)" data-count="(\d+)"', m.group(0)):
            n[side] += int(count)
        out[m.group(1)] = n
    return out


def _tshark_retransmissions(cap: Path) -> dict[tuple[str, str], int]:
    """tshark's tcp.analysis.retransmission segments per (source, destination) address."""
    p = subprocess.run(["tshark", "-n", "-r", str(cap), "-Y", "tcp.analysis.retransmission", "-T", "fields",
                        "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst"],
                       capture_output=True, text=True, timeout=120)
    out: dict = {}
    for line in p.stdout.splitlines():
        a, b, a6, b6 = (line.split("\t") + [""] * 4)[:4]
        key = (a or a6, b or b6)
        out[key] = out.get(key, 0) + 1
    return out


@needs_tshark
@pytest.mark.parametrize("cap", [LOSS, KERNEL / "lossy_bulk.pcap", KERNEL / "simultaneous_close.pcap"],
                         ids=["loss_bulk", "lossy_bulk", "simultaneous_close"])
def test_pair_chart_retransmissions_are_tsharks_per_direction(cap):
    """Each pair chart's bars add up, per direction, to the segments tshark flags tcp.analysis.retransmission
    (fast and spurious ones included, as tshark's field is): the recorded loss, a lossy bulk transfer, and a
    simultaneous close where both sides retransmit their FIN."""
    from tcpfsm.path.views import path_pairs
    an = tcpfsm.analyze(str(cap))
    bars = _pair_bars(html_report(an))
    ref = _tshark_retransmissions(cap)
    assert sum(ref.values()) > 0
    pairs = path_pairs(an)
    assert list(bars) == [f"{p['client']}-{p['server']}" for p in pairs]
    for p in pairs:
        got = bars[f"{p['client']}-{p['server']}"]
        assert got == {"client": ref.get((p["client"], p["server"]), 0),
                       "server": ref.get((p["server"], p["client"]), 0)}, p
    assert sum(n for b in bars.values() for n in b.values()) == sum(ref.values())


def test_pair_chart_rtt_is_the_paths_view_samples_on_a_clock_axis():
    """The RTT dots summarise exactly the Karn samples `tcpfsm paths` reports for the pair (count, least,
    most), placed on a wall-clock axis within the pair's connections; the mtr-like row is the paths view's."""
    from datetime import datetime
    from tcpfsm.path.views import path_cells, path_pairs
    from tcpfsm.render.report import pair_bins, pair_series
    an = tcpfsm.analyze(str(LOSS))
    (p,) = path_pairs(an)
    key = (p["client"], p["server"])
    series = pair_series(an, [key])[key]
    t0, t1 = an.flows[0].first_ts, an.flows[0].last_ts
    step, bins = pair_bins(series, t0, t1)
    stats = [d[k] for d in bins for k in ("rtt_client", "rtt_server") if k in d]
    assert sum(n for n, _, _, _ in stats) == p["rtt_ms"]["samples"] > 5
    assert round(min(lo for _, lo, _, _ in stats), 3) == p["rtt_ms"]["best"]
    assert round(max(hi for _, _, _, hi in stats), 3) == p["rtt_ms"]["worst"]
    assert all(t0 - step <= d["start"] <= t1 for d in bins) and len(bins) <= 101
    page = html_report(an)
    chart = re.search(r'<svg[^>]*data-pair="10\.79\.1\.1-10\.79\.1\.2".*?</svg>', page, re.S).group(0)
    labels = re.findall(r'text-anchor="middle">(\d\d:\d\d:\d\d\.\d+)</text>', chart)
    day = datetime.fromtimestamp(t0 / 1e9).date()
    secs = [datetime.combine(day, datetime.strptime(x, "%H:%M:%S.%f").time()).timestamp() for x in labels]
    assert len(secs) >= 3 and t0 / 1e9 - 1e-3 <= secs[0] and secs[-1] <= t1 / 1e9 + 1e-3
    tips = re.findall(r"<title>[\d:.]+ \(\+[^)]+\): ([^<]*)</title>", chart)
    assert sum(int(m) for t in tips for m in re.findall(r"(\d+) samples?", t)) == p["rtt_ms"]["samples"]
    row = re.search(r"<table class='mtr'>.*?</table>", page[page.index("id='paths'"):], re.S).group(0)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", row) == path_cells(p)
    # the lossy_path finding links to this chart, and the link lands
    assert "<a href='#pair-10-79-1-1-10-79-1-2'>path 10.79.1.1 → 10.79.1.2</a>" in page
    assert "<figure class='pair' id='pair-10-79-1-1-10-79-1-2'>" in page


def test_busiest_pairs_drawn_first_the_rest_listed(tmp_path):
    cap = tmp_path / "scaled.pcap"
    _scaled_capture(cap, 12)
    from tcpfsm.path.views import path_pairs
    from tcpfsm.render.report import PAIRS_DRAWN
    an = tcpfsm.analyze(str(cap))
    page = html_report(an)
    order = [f"{p['client']}-{p['server']}" for p in path_pairs(an)]
    assert len(order) == 12
    assert re.findall(r'data-pair="([^"]+)"', page) == order[:PAIRS_DRAWN]
    assert f"Other host pairs ({12 - PAIRS_DRAWN})" in page
    listed = page[page.index("Other host pairs"):]
    listed = listed[:listed.index("</table>")]
    assert [f"{a}-{b}" for a, b in re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td>", listed)] == \
        order[PAIRS_DRAWN:]


@pytest.fixture(scope="module")
def loss_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "loss.html"
    from tcpfsm.cli import main
    main(["report", str(LOSS), "-o", str(out)])
    return out


@needs_chromium
@needs_tshark
def test_chromium_draws_the_pair_chart_of_the_recorded_loss(loss_report, tmp_path):
    """In the browser: no script errors, the paths section, one pair chart whose bars add up to tshark's
    retransmissions per direction, hover works on it, and a screenshot of it shows the bars."""
    r = probe(loss_report, tmp_path)
    assert r["errors"] == [] and r["sections"] == SECTIONS
    ref = _tshark_retransmissions(LOSS)
    (name, w, h, client, server, top, bottom, dots), = r["pairs"]
    assert name == "10.79.1.1-10.79.1.2" and w > 300 and h > 150 and dots > 5
    assert (client, server) == (ref.get(("10.79.1.1", "10.79.1.2"), 0), ref.get(("10.79.1.2", "10.79.1.1"), 0))
    SHOTS.mkdir(exist_ok=True)
    shot = SHOTS / "report_loss_paths.png"
    shot.unlink(missing_ok=True)
    height = int(bottom) + 40
    chromium(f"--screenshot={shot}", f"--window-size=1280,{height}", loss_report.as_uri())
    width, hh, rows, bpp = png_pixels(shot)
    assert hh == height
    blue = 0                                         # the client's colour (#1f6feb): its bars and dots
    for row in rows[int(top):int(bottom)]:
        for x in range(0, width * bpp, bpp):
            px = row[x:x + 3]
            blue += abs(px[0] - 0x1f) < 24 and abs(px[1] - 0x6f) < 24 and abs(px[2] - 0xeb) < 24
    assert blue > 200, blue


CAPTURES = sorted(p for p in (ROOT / "captures").rglob("*")
                  if p.is_file() and p.name.endswith((".pcap", ".pcapng", ".pcap.gz")))


@pytest.mark.parametrize("cap", CAPTURES, ids=lambda p: str(p.relative_to(ROOT / "captures")))
def test_pair_series_rerun_is_the_whole_analysis(cap):
    """The pair charts re-run the path kernel on each pair's segments alone; on every capture here that gives
    the whole analysis' numbers: per pair and direction the retransmissions of the `segments` view, and the
    RTT sample count of the `paths` view (4-tuples reused, midstream pickups, tunnels, IPv6 included)."""
    from tcpfsm.path.views import path_pairs, segment_rows
    from tcpfsm.render.report import pair_series
    try:
        an = tcpfsm.analyze(str(cap), keep_segments=True)
    except (tcpfsm.CaptureError, ValueError):
        return                                           # an error-path fixture
    pairs = path_pairs(an)
    series = pair_series(an, [(p["client"], p["server"]) for p in pairs])
    by_id = {f.id: (f.client_ip, f.server_ip) for f in an.flows}
    want: dict = {}
    for rec, _, _, _ in segment_rows(an):
        if "retransmission" in rec["analysis"] and rec["flow"] in by_id:
            k = (by_id[rec["flow"]], rec["endpoint"])
            want[k] = want.get(k, 0) + 1
    for p in pairs:
        key = (p["client"], p["server"])
        ts, client = series[key]["retx"]
        assert (int(client.sum()), int((~client).sum())) == (want.get((key, "client"), 0),
                                                             want.get((key, "server"), 0)), key
        assert len(series[key]["rtt"][1]) == (p["rtt_ms"] or {}).get("samples", 0), key
