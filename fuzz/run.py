#!/usr/bin/env python3
"""The fuzz harness: structure-aware mutants of the captures under captures/ through every engine and
every command, in process (the API, and the CLI's `main()`) and, for a sample, through the CLI in a
subprocess -- for a bounded time.

    fuzz/run.py --seconds 600            # `make fuzz` (FUZZ_SECONDS overrides)
    fuzz/run.py --replay fuzz/out/failures/SIG   # run one kept reproducer again, print the verdict

A case is drawn by hypothesis: a seed capture, a list of mutations (fuzz/mutate.py), optional
gzip/bz2/xz wrapping (cut short or not), a command and output format, an engine (fast, dpkt, tshark --
tshark rarely: it is the slow one) and a way in (the API, the CLI in process, the CLI as a subprocess,
sometimes with TCPFSM_PURE=1 or the capture on stdin). What counts as a failure:

* an exception from the API other than one tcpfsm raises on purpose (CaptureError, or a ValueError
  raised by a `raise` line in tcpfsm with a one-line message); a Python warning (numpy overflow...);
* from the CLI: an exit status other than 0 or 2, a stderr line that is not `tcpfsm: ...` (a
  traceback, a multi-line error), a non-zero exit without exactly one `tcpfsm: error:` line;
* a case running longer than --case-seconds (a hang), or a worker that dies (a crash in compiled code);
* output that is not what its format promises: JSON / JSON lines that do not parse strictly, NaN or
  Infinity anywhere in any output (JSON, CSV, Zeek TSV, tables, Markdown, HTML) or in the API's records.

Each distinct failure (exception type + innermost tcpfsm frame, or the kind of failure + command) is
shrunk by hypothesis and its smallest case kept under fuzz/out/failures/<signature>/ (case.pcap, and
case.json: what failed, the traceback, the mutations and the command line that reproduces it).
fuzz/out/summary.json has the counts. Exit status 1 when a failure was found that fuzz/known.json does
not list (known ones -- filed, with their reproducer under fuzz/known/ -- are reported but do not fail
the run), else 0.

A supervisor process runs the fuzzing in a worker (address space limited to --memory-mb); a worker that
dies or stops answering (a segfault, a hang in compiled code) has its last case kept as a reproducer and
is replaced for the remaining time. A worker whose heap grew past a third of its limit after a heavy case
hands over to a fresh one (not a failure): a long-lived process near its limit fails in ways (CPython's
"Cannot recover from MemoryErrors", SIGSEGV in an extension) that say nothing about tcpfsm.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import hashlib
import io
import json
import linecache
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import mutate  # noqa: E402

OUT = HERE / "out"
KNOWN = HERE / "known.json"     # signature -> what it is and who owns it: reported, but not a new failure
NS = 1_000_000_000

# (name, argv after the capture path, output kind, takes --engine)
COMMANDS = [
    ("api", None, None, True),
    ("api-stream", None, None, True),
    ("analyze:table", ["--format", "table", "-q"], "text", True),
    ("analyze:json", ["--format", "json"], "json", True),
    ("analyze:jsonl", ["--format", "jsonl"], "jsonl", True),
    ("analyze:csv", ["--format", "csv"], "csv", True),
    ("analyze:zeek", ["--format", "zeek"], "tsv", True),
    ("analyze:zeek-json", ["--format", "zeek-json"], "jsonl", True),
    ("analyze-opts:json", ["--format", "json", "--verify-checksums", "--capture-point", "server", "--profile",
                           "windows", "--end", "+10m", "--timer", "time_wait=1", "--zeek"], "json", True),
    ("analyze-stream:json", ["--format", "json", "--stream", "--max-tracked", "100"], "json", True),
    ("analyze-stream:jsonl", ["--format", "jsonl", "--stream", "--max-tracked", "100"], "jsonl", True),
    ("analyze-stream:csv", ["--format", "csv", "--stream", "--max-tracked", "100"], "csv", True),
    ("analyze-stream:table", ["--format", "table", "--stream", "--max-tracked", "100", "-q"], "text", True),
    ("timeline:text", ["--format", "text"], "text", False),
    ("timeline:json", ["--format", "json"], "json", False),
    ("timeline:md", ["--format", "md"], "text", False),
    ("timeline-opts:json", ["--format", "json", "--capture-point", "client", "--profile", "bsd", "--end", "+1h",
                            "--verify-checksums"], "json", False),
    ("netstat:text", ["--at", "+0.5s", "--format", "text"], "text", False),
    ("netstat:json", ["--at", "+0.5s", "--at", "+1h", "--format", "json"], "json", False),
    # 1h, not 1m: the table renderer's known slowness (fuzz/known.json) would eat half of every run
    ("states:table", ["--interval", "1h", "--format", "table"], "text", False),
    ("states:csv", ["--interval", "1m", "--format", "csv"], "csv", False),
    ("states:json", ["--interval", "1m", "--format", "json"], "json", False),
    ("report:md", ["--format", "md"], "text", False),
    ("report:html", ["--format", "html"], "text", False),
]
ENGINES = ["fast"] * 14 + ["dpkt"] * 5 + ["tshark"]     # tshark: a process per case, so one case in 20
VIAS = ["inproc"] * 28 + ["subprocess", "subprocess-pure"]
COMPRESS = [0] * 13 + [1, 2, 3]                           # none, gzip, bz2, xz

NONFINITE_TEXT = re.compile(r"(?<![\w.])-?(?:nan|NaN|NAN|inf|Inf|INF|Infinity)(?![\w])")
NONFINITE_FIELDS = {"nan", "NaN", "NAN", "inf", "-inf", "Inf", "-Inf", "Infinity", "-Infinity"}


class Failure(Exception):
    """A case that broke a rule: `sig` names the bug (for deduplication), `detail` says what happened."""

    def __init__(self, sig: str, detail: str, tb: str = ""):
        super().__init__(sig)
        self.sig, self.detail, self.tb = sig, detail, tb


RECYCLE = 3         # a worker's exit status for "replace me" (its heap grew): not a death


def _rss_mb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


class CaseTimeout(BaseException):
    """The per-case time bound ran out (BaseException: tcpfsm's own `except Exception` must not eat it)."""


# -- seeds -------------------------------------------------------------------------------------
def load_seeds(max_bytes: int = 1 << 20) -> list[tuple[str, bytes, object]]:
    seen, seeds = set(), []
    for p in sorted((ROOT / "captures").rglob("*")):
        if not p.is_file() or not re.search(r"\.(pcap|pcapng|cap)(\.gz)?$", p.name):
            continue
        data = p.read_bytes()
        if p.name.endswith(".gz"):
            data = gzip.decompress(data)
        h = hashlib.sha1(data).digest()
        if len(data) > max_bytes or h in seen:
            continue
        seen.add(h)
        seeds.append((str(p.relative_to(ROOT)), data, mutate.parse(data)))
    return seeds


def build_case(seeds, case) -> bytes:
    seed_i, ops, other_i, comp_i, cut, *_ = case
    name, raw, model = seeds[seed_i % len(seeds)]
    other = seeds[other_i % len(seeds)][2]
    m = mutate.parse(raw) if model is not None else None     # a fresh model: mutations edit it in place
    data = mutate.apply(m, raw, ops, other)
    return mutate.compress(data, COMPRESS[comp_i % len(COMPRESS)], 100 - cut)


def describe(seeds, case) -> dict:
    seed_i, ops, other_i, comp_i, cut, cmd_i, eng_i, via_i = case
    name, argv, kind, engine_opt = COMMANDS[cmd_i % len(COMMANDS)]
    engine = ENGINES[eng_i % len(ENGINES)] if engine_opt else "fast"
    return {"seed": seeds[seed_i % len(seeds)][0], "splice_from": seeds[other_i % len(seeds)][0],
            "ops": [[mutate.OPS[o % len(mutate.OPS)], a, b, c] for o, a, b, c in ops],
            "compress": ["none", "gzip", "bz2", "xz"][COMPRESS[comp_i % len(COMPRESS)]],
            "compressed_cut_percent": 100 - cut, "command": name, "engine": engine,
            "via": VIAS[via_i % len(VIAS)], "case": [seed_i, [list(o) for o in ops], other_i, comp_i, cut, cmd_i,
                                                     eng_i, via_i]}


# -- oracles -----------------------------------------------------------------------------------
def _reject_constant(tok):
    raise ValueError(f"non-finite number {tok} in JSON")


def check_output(data: bytes, kind: str, where: str) -> None:
    """Raise Failure when `data` is not what an output of `kind` promises."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Failure(f"output-not-utf8:{where}", str(e)) from None
    if kind == "json":
        try:
            json.loads(text, parse_constant=_reject_constant)
        except ValueError as e:
            raise Failure(f"invalid-json:{where}", f"{e}; output starts {text[:200]!r}") from None
    elif kind == "jsonl":
        if text and not text.endswith("\n"):
            raise Failure(f"jsonl-cut:{where}", f"output does not end with a newline: ...{text[-200:]!r}")
        for i, line in enumerate(text.splitlines()):
            try:
                json.loads(line, parse_constant=_reject_constant)
            except ValueError as e:
                raise Failure(f"invalid-jsonl:{where}", f"line {i + 1}: {e}: {line[:200]!r}") from None
    elif kind in ("csv", "tsv"):
        rows = csv.reader(io.StringIO(text)) if kind == "csv" else (l.split("\t") for l in text.splitlines())
        for i, row in enumerate(rows):
            bad = [f for f in row if f.strip() in NONFINITE_FIELDS]
            if bad:
                raise Failure(f"nonfinite-field:{where}", f"row {i + 1} has {bad[0]!r}: {row[:12]}")
    else:
        m = NONFINITE_TEXT.search(text)
        if m:
            raise Failure(f"nonfinite-text:{where}", f"{m.group(0)!r} in ...{text[max(m.start() - 80, 0):m.end() + 80]!r}")


def check_finite(obj, path: str, where: str) -> None:
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise Failure(f"nonfinite-api:{where}", f"{path} = {obj}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            check_finite(v, f"{path}.{k}", where)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_finite(v, f"{path}[{i}]", where)


def check_stderr(err: str, code, where: str) -> None:
    if code not in (0, 2, None):
        tb = err
        raise Failure(f"exit-{code}:{where}:{_tb_signature(err)}", f"exit status {code}: {err[-600:]}", tb)
    lines = [l for l in err.splitlines() if l.strip()]
    stray = [l for l in lines if not l.startswith("tcpfsm: ")]
    if stray:
        raise Failure(f"stderr-not-one-line:{where}:{_tb_signature(err) or stray[0][:40]}",
                      f"stderr line not from tcpfsm: {stray[0][:300]!r}", err)
    errors = [l for l in lines if l.startswith("tcpfsm: error:")]
    if code == 2 and len(errors) != 1:
        raise Failure(f"error-lines:{where}", f"exit 2 with {len(errors)} error lines: {err[-600:]}")
    if code in (0, None) and errors:
        raise Failure(f"error-but-exit-0:{where}", err[-600:])


def _tb_signature(text: str) -> str:
    """`Type@file:function:line` of the innermost tcpfsm frame of a printed traceback ('' when none)."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', text)
    ours = [f for f in frames if "/tcpfsm/" in f[0]] or frames
    exc = re.findall(r"^(\w+(?:\.\w+)*(?:Error|Exception|Warning|Interrupt|Exit)\b)", text, re.M)
    if not ours:
        return exc[-1] if exc else ""
    f = ours[-1]
    return f"{exc[-1] if exc else 'Error'}@{_short(f[0])}:{f[2]}:{f[1]}"


def _short(path: str) -> str:
    i = path.rfind("/tcpfsm/")
    return path[i + 1:] if i >= 0 else os.path.basename(path)


def exc_signature(e: BaseException) -> tuple[str, str]:
    tb = traceback.extract_tb(e.__traceback__)
    ours = [f for f in tb if "/tcpfsm/" in f.filename] or list(tb)
    loc = f"@{_short(ours[-1].filename)}:{ours[-1].name}:{ours[-1].lineno}" if ours else ""
    return f"{type(e).__name__}{loc}", "".join(traceback.format_exception(e))


def deliberate(e: BaseException) -> bool:
    """An error tcpfsm raised on purpose for bad input: a CaptureError, or a ValueError raised by a
    `raise` statement in tcpfsm (not one from numpy, struct or int() deep inside)."""
    from tcpfsm.capture.batch import CaptureError
    if "\n" in str(e):
        return False
    if isinstance(e, CaptureError):
        return True
    if not isinstance(e, ValueError):
        return False
    tb = traceback.extract_tb(e.__traceback__)
    if not tb:
        return False
    last = tb[-1]
    line = linecache.getline(last.filename, last.lineno) if last.filename else ""
    return "/tcpfsm/" in last.filename and "raise" in line


# -- running one case --------------------------------------------------------------------------
class Runner:
    def __init__(self, seeds, case_seconds: float, workdir: Path):
        self.seeds = seeds
        self.case_seconds = case_seconds
        self.work = workdir
        self.tcpfsm = [sys.executable, "-m", "tcpfsm.cli"]
        self.stats = Counter()

    def run(self, case) -> None:
        """Build and run one case; raise Failure when it breaks a rule."""
        d = describe(self.seeds, case)
        data = build_case(self.seeds, case)
        path = self.work / "case.pcap"
        path.write_bytes(data)
        (self.work / "current.json").write_text(json.dumps(d))     # what a dying worker was doing
        name, argv, kind, _ = COMMANDS[case[5] % len(COMMANDS)]
        where = f"{name}/{d['engine']}"
        self.stats["cases"] += 1
        self.stats[f"engine:{d['engine']}"] += 1
        self.stats[f"command:{name}"] += 1
        self.stats[f"via:{d['via'] if argv else 'api'}"] += 1
        if argv is None:
            self._api(path, name, d["engine"], where)
        elif d["via"] == "inproc":
            self._cli_inproc(path, name, argv, kind, d["engine"], where)
        else:
            self._cli_subprocess(path, name, argv, kind, d["engine"], where, pure=d["via"].endswith("pure"),
                                 stdin=case[0] % 3 == 0)

    @contextlib.contextmanager
    def _bounded(self, where: str):
        def on_alarm(*_):
            raise CaseTimeout
        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.case_seconds)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")          # a warning reaching the user is a failure
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", category=ResourceWarning)
                yield
        except CaseTimeout:
            raise Failure(f"hang:{where}", f"case ran longer than {self.case_seconds} s") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    def _api(self, path: Path, name: str, engine: str, where: str) -> None:
        import tcpfsm
        from tcpfsm.render import records
        stream = name == "api-stream"
        handed = []
        try:
            with self._bounded(where):
                an = tcpfsm.analyze(str(path), engine=engine, stream=stream, max_flows=100 if stream else None,
                                    on_flow=handed.append if stream else None)
                check_finite(an.summary(), "summary", where)
                for f in list(an.flows) + handed:
                    check_finite(records.flow_record(f), f"flow[{f.id}]", where)
                check_finite(records.analysis_record(an), "analysis", where)
                if not stream:
                    an.netstat("+0.5s")
                    span = max((an.end - an.start) / NS, 0.0)
                    rows = an.states(max(span / 100, 0.001))
                    check_finite(records.states_records(rows), "states", where)
        except Failure:
            raise
        except Exception as e:          # noqa: BLE001 -- judging every exception is the point
            if deliberate(e):
                self.stats["outcome:refused"] += 1
                return
            sig, tb = exc_signature(e)
            raise Failure(f"{sig}:{where}" if isinstance(e, Warning) else sig, f"{type(e).__name__}: {e}", tb) from None
        self.stats["outcome:ok"] += 1

    def _cli_argv(self, cmd: str, path: str, argv, engine: str, out: str | None) -> list[str]:
        args = [cmd, path] + list(argv)
        if cmd == "analyze" and engine != "fast":
            args += ["--engine", engine]
        if out:
            args += ["-o", out]
        return args

    def _cli_inproc(self, path: Path, name: str, argv, kind: str, engine: str, where: str) -> None:
        from tcpfsm import cli
        cmd = name.split(":")[0].split("-")[0]
        out = self.work / ("out." + ("html" if name == "report:html" else "md" if cmd == "report" else "txt"))
        out.unlink(missing_ok=True)
        args = self._cli_argv(cmd, str(path), argv, engine, str(out))
        err = io.StringIO()
        code = 0
        os.environ["TCPFSM_DEBUG"] = "1"
        try:
            with self._bounded(where), contextlib.redirect_stderr(err):
                try:
                    cli.main(args)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Failure:
            raise
        except Exception as e:          # noqa: BLE001 -- main() must not let one out
            sig, tb = exc_signature(e)
            raise Failure(f"escaped-main:{sig}", f"{type(e).__name__}: {e}", tb) from None
        finally:
            import gc
            gc.enable()                 # main() pauses the collector for its (normally one) run
        check_stderr(err.getvalue(), code, where)
        self.stats[f"outcome:exit{code}"] += 1
        if code == 0:
            if not out.exists():
                raise Failure(f"no-output:{where}", f"exit 0 but {out.name} was not written")
            check_output(out.read_bytes(), kind, where)

    def _cli_subprocess(self, path: Path, name: str, argv, kind: str, engine: str, where: str, pure: bool,
                        stdin: bool) -> None:
        cmd = name.split(":")[0].split("-")[0]
        args = self.tcpfsm + self._cli_argv(cmd, "-" if stdin else str(path), argv, engine, None)
        env = dict(os.environ, TCPFSM_DEBUG="1")
        if pure:
            env["TCPFSM_PURE"] = "1"
        where = f"{where}/cli" + ("-pure" if pure else "") + ("-stdin" if stdin else "")
        try:
            with open(path, "rb") as fin:
                p = subprocess.run(args, stdin=fin if stdin else subprocess.DEVNULL, capture_output=True,
                                   timeout=self.case_seconds * (4 if pure else 2), env=env, cwd=self.work)
        except subprocess.TimeoutExpired:
            raise Failure(f"hang:{where}", f"subprocess ran longer than its bound: {' '.join(args)}") from None
        err = p.stderr.decode("utf-8", "replace")
        code = p.returncode
        check_stderr(err, code, where)
        self.stats[f"outcome:exit{code}"] += 1
        if code == 0:
            check_output(p.stdout, kind, where)


# -- keeping reproducers -----------------------------------------------------------------------
def _slug(sig: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.@-]+", "_", sig)[:90]
    return f"{s}-{hashlib.sha1(sig.encode()).hexdigest()[:8]}"


def keep(seeds, case, f: Failure, root: Path) -> Path:
    """Store the case under root/<signature>/ if it is the first or smaller than the one kept."""
    d = root / _slug(f.sig)
    data = build_case(seeds, case)
    size = (len(case[1]), len(data))
    meta_p = d / "case.json"
    if meta_p.exists():
        old = json.loads(meta_p.read_text())
        if tuple(old.get("size", (1 << 30, 1 << 60))) <= size:
            old["hits"] = old.get("hits", 1) + 1
            meta_p.write_text(json.dumps(old, indent=1))
            return d
        hits = old.get("hits", 1) + 1
    else:
        hits = 1
    d.mkdir(parents=True, exist_ok=True)
    (d / "case.pcap").write_bytes(data)
    desc = describe(seeds, case)
    name, argv, kind, _ = COMMANDS[case[5] % len(COMMANDS)]
    cmd = name.split(":")[0].split("-")[0]
    if argv is None:
        repro = (f"python -c 'import tcpfsm; tcpfsm.analyze(\"{d / 'case.pcap'}\", engine=\"{desc['engine']}\""
                 + (", stream=True, max_flows=100" if name == "api-stream" else "") + ")'")
    else:
        extra = ["--engine", desc["engine"]] if cmd == "analyze" and desc["engine"] != "fast" else []
        repro = " ".join(["TCPFSM_DEBUG=1", "tcpfsm", cmd, str(d / "case.pcap")] + list(argv) + extra)
    meta = dict(desc, signature=f.sig, detail=f.detail, traceback=f.tb[-4000:], size=list(size), hits=hits,
                reproduce=repro, replay=f"fuzz/run.py --replay {d}")
    meta_p.write_text(json.dumps(meta, indent=1))
    return d


# -- the worker: hypothesis, in batches, until the time is up -----------------------------------
def worker(args) -> int:
    from hypothesis import HealthCheck, Phase, Verbosity, given, seed as hseed, settings, strategies as st

    resource.setrlimit(resource.RLIMIT_AS, (args.memory_mb << 20, args.memory_mb << 20))
    seeds = load_seeds()
    stop_at = time.time() + args.seconds
    work = Path(args.workdir)
    runner = Runner(seeds, args.case_seconds, work)
    failures_dir = OUT / "failures"
    closed = set(json.loads((work / "closed.json").read_text())) if (work / "closed.json").exists() else set()
    found = Counter()
    op = st.tuples(st.integers(0, len(mutate.OPS) - 1), st.integers(0, 0xFFFF), st.integers(0, 255),
                   st.integers(0, 0xFFFFFFFF))
    # choices are wide integers taken modulo the list (hypothesis favours small numbers: drawn from exactly
    # 0..n-1 the first entries would get most cases); each still shrinks towards 0, the simplest choice
    pick = st.integers(0, 0xFFFF)
    case_st = st.tuples(pick, st.lists(op, max_size=6), pick, pick, st.integers(0, 100), pick, pick, pick)
    last_save = 0.0

    def save_stats(final=False):
        (work / "stats.json").write_text(json.dumps({"stats": runner.stats, "found": found,
                                                     "closed": sorted(closed)}))

    batch_no = 0
    rng_seed = args.seed
    while time.time() < stop_at:
        batch_no += 1
        seen_here: set[str] = set()

        @settings(max_examples=args.batch, database=None, deadline=None, derandomize=False,
                  phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
                  report_multiple_bugs=False, print_blob=False, verbosity=Verbosity.quiet)
        @hseed(rng_seed * 1_000_003 + batch_no)
        @given(case_st)
        def prop(case):
            nonlocal last_save
            if time.time() >= stop_at:
                return
            try:
                runner.run(case)
            except Failure as f:
                found[f.sig] += 1
                runner.stats["failing_runs"] += 1
                keep(seeds, case, f, failures_dir)
                if f.sig not in closed:
                    seen_here.add(f.sig)
                    raise
            finally:
                if time.time() - last_save > 2:
                    last_save = time.time()
                    save_stats()
                if _rss_mb() > args.memory_mb // 3:    # a heavy case left the heap large: a fresh worker
                    save_stats()
                    os._exit(RECYCLE)

        try:
            prop()
        except Failure:
            pass
        except Exception as e:          # noqa: BLE001 -- e.g. hypothesis' Flaky: a failure that did not repeat
            print(f"fuzz: batch {batch_no}: {type(e).__name__}: {str(e).splitlines()[0][:200]}", file=sys.stderr)
        closed.update(seen_here)
        (work / "closed.json").write_text(json.dumps(sorted(closed)))
    save_stats(final=True)
    return 0


# -- the supervisor ----------------------------------------------------------------------------
def supervise(args) -> int:
    OUT.mkdir(exist_ok=True)
    (OUT / "failures").mkdir(exist_ok=True)
    t0 = time.time()
    stop_at = t0 + args.seconds
    total = Counter()
    found = Counter()
    deaths = 0
    seeds = load_seeds()
    with tempfile.TemporaryDirectory(prefix="tcpfsm-fuzz-") as tmp:
        work = Path(tmp)
        n = 0
        while time.time() < stop_at - 1:
            n += 1
            (work / "stats.json").unlink(missing_ok=True)
            left = stop_at - time.time()
            cmd = [sys.executable, __file__, "--worker", "--workdir", str(work), "--seconds", f"{left:.1f}",
                   "--case-seconds", str(args.case_seconds), "--batch", str(args.batch),
                   "--seed", str(args.seed + n), "--memory-mb", str(args.memory_mb)]
            p = subprocess.Popen(cmd, cwd=ROOT)
            # a worker checks the clock between cases; one stuck in compiled code is ended here
            try:
                rc = p.wait(timeout=left + 4 * args.case_seconds + 60)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
            stats = json.loads((work / "stats.json").read_text()) if (work / "stats.json").exists() else {}
            total.update(stats.get("stats", {}))
            found.update(stats.get("found", {}))
            if rc not in (0, RECYCLE):
                deaths += 1
                cur = work / "current.json"
                what = json.loads(cur.read_text()) if cur.exists() else {}
                sig = f"worker-died:{rc}:{what.get('command')}/{what.get('engine')}"
                found[sig] += 1
                if what:
                    f = Failure(sig, f"the worker ended with status {rc} while running this case "
                                     "(not shrunk: it kills the worker)")
                    keep(seeds, _case_tuple(what["case"]), f, OUT / "failures")
    elapsed = time.time() - t0
    summary = {"seconds": round(elapsed, 1), "cases": total.get("cases", 0),
               "by_engine": {k[7:]: v for k, v in sorted(total.items()) if k.startswith("engine:")},
               "by_command": {k[8:]: v for k, v in sorted(total.items()) if k.startswith("command:")},
               "by_way_in": {k[4:]: v for k, v in sorted(total.items()) if k.startswith("via:")},
               "outcomes": {k[8:]: v for k, v in sorted(total.items()) if k.startswith("outcome:")},
               "failing_runs": total.get("failing_runs", 0) + deaths,
               "distinct_failures": dict(found),
               "known": sorted(s for s in found if s in (json.loads(KNOWN.read_text()) if KNOWN.exists() else {})), "worker_restarts": deaths, "workers": n, "seeds": len(seeds)}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"fuzz: {summary['cases']:,} cases in {elapsed:.0f} s over {len(seeds)} seed captures")
    print("  engines:  " + ", ".join(f"{k} {v:,}" for k, v in summary["by_engine"].items()))
    print("  ways in:  " + ", ".join(f"{k} {v:,}" for k, v in summary["by_way_in"].items()))
    print("  outcomes: " + ", ".join(f"{k} {v:,}" for k, v in summary["outcomes"].items()))
    print("  commands: " + ", ".join(f"{k} {v:,}" for k, v in summary["by_command"].items()))
    known = json.loads(KNOWN.read_text()) if KNOWN.exists() else {}
    new = {s: k for s, k in found.items() if s not in known}
    if found:
        print(f"fuzz: {len(found)} distinct failure(s), reproducers in {OUT / 'failures'}:")
        for sig, k in found.most_common():
            print(f"  {k:6,}  {sig}" + (f"  (known: {known[sig]})" if sig in known else ""))
    print(f"fuzz: {len(new)} new failure(s)" if new else "fuzz: no new failure")
    return 1 if new else 0


def _case_tuple(c) -> tuple:
    return (c[0], [tuple(o) for o in c[1]], *c[2:])


def replay(args) -> int:
    d = Path(args.replay)
    meta = json.loads((d / "case.json").read_text())
    seeds = load_seeds()
    with tempfile.TemporaryDirectory(prefix="tcpfsm-fuzz-") as tmp:
        r = Runner(seeds, args.case_seconds, Path(tmp))
        try:
            r.run(_case_tuple(meta["case"]))
        except Failure as f:
            print(f"FAILS: {f.sig}\n{f.detail}\n{f.tb}")
            return 1
    print("passes now")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 600)))
    ap.add_argument("--case-seconds", type=float, default=10.0, help="a case running longer is a hang")
    ap.add_argument("--batch", type=int, default=200, help="hypothesis examples per batch (then a new seed)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    ap.add_argument("--memory-mb", type=int, default=4096, help="address-space limit of the worker")
    ap.add_argument("--replay", metavar="DIR")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.replay:
        return replay(args)
    if args.worker:
        return worker(args)
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
