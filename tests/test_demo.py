"""`make demo` tells the story on one screen (issue 9 part 2), and README.md's first example output is
exactly what it prints: the Makefile's demo command is run here as written (its tcpfsm and capture
substituted), in UTC as the README was made, and compared line by line with the README block."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def demo_command() -> list[str]:
    make = (ROOT / "Makefile").read_text()
    capture = re.search(r"^DEMO_CAPTURE \?= (\S+)", make, re.M).group(1)
    recipe = re.search(r"^demo:.*\n\t(.+)", make, re.M).group(1)
    args = shlex.split(recipe.replace("$(DEMO_CAPTURE)", capture))
    assert args[0] == "$(VENV)/bin/tcpfsm"
    return [sys.executable, "-m", "tcpfsm.cli", *args[1:]]


def run_demo() -> subprocess.CompletedProcess:
    env = dict(os.environ, TZ="UTC", PYTHONPATH=str(ROOT))
    return subprocess.run(demo_command(), capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_readme_first_example_is_the_demo_output():
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```\n(\$ .*?)```", readme, re.S).group(1)
    assert first.startswith("$ make demo\n")
    p = run_demo()
    assert p.returncode == 0, p.stderr
    got = [x.rstrip() for x in p.stdout.rstrip("\n").splitlines()]
    assert got == first[len("$ make demo\n"):].rstrip("\n").splitlines()


def test_demo_fits_one_screen_and_tells_the_story():
    out = run_demo().stdout
    lines = out.splitlines()
    assert len(lines) <= 60 and max(len(x.rstrip()) for x in lines) <= 120
    for part in ("What went wrong", "close_wait_pile", "Per-host piles", "The connections behind them",
                 "Ladder of flow"):
        assert part in out, part
    # grouped, not a long table of repeats: four groups stand for the 250 flows the findings name
    rows = [x for x in lines if re.match(r"\s+\d+\s+10\.77\.15\.1 → ", x)]
    assert len(rows) == 4 and sum(int(x.split()[0]) for x in rows) == 250
    ladder = lines[lines.index(next(x for x in lines if x.startswith("Ladder of flow"))) + 1:]
    assert sum("▶" in x or "◀" in x for x in ladder) == 11       # flow 1's eleven segments, one arrow each
    assert "SYN_SENT" in ladder[1] and ladder[-1].split()[-1] == "CLOSED"
