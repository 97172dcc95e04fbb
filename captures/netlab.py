"""Network-namespace labs for the recorders under captures/ (path/record_path.py, icmp/record_icmp.py).

Owns what every such recorder needs around its topology: running a command (`sh`), the namespaces and
processes it started (removed again by exact name / PID in `cleanup`, never by pattern), running code or
commands inside a namespace, a tcpdump on the client's `veth0` that is known to be listening before traffic
starts, stopping it, and waiting for worker processes. A recorder subclasses `Lab`, builds its own
namespaces, links and addresses in `__init__` (with `add_ns`), and sets the capture filter and timings as
class attributes. Root only.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

_NS: list[str] = []
_PROCS: list[subprocess.Popen] = []


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def cleanup() -> None:
    """Stop every process and delete every namespace a Lab started, by PID and exact name."""
    for p in _PROCS:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
    _PROCS.clear()
    for ns in _NS:
        sh("ip", "netns", "del", ns, check=False)
    _NS.clear()


def wait_all(*procs: subprocess.Popen, timeout: float = 90) -> list[str]:
    """Each worker's stdout, once all ended; a worker that failed raises with the end of its stderr."""
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode:
            raise RuntimeError(f"worker failed: {err.strip()[-400:]}")
        outs.append(out)
    return outs


class Lab:
    """Namespaces joined by veth links (built by the subclass); the capture runs on `self.c`'s veth0."""

    CAPTURE_FILTER = "tcp"      # tcpdump filter
    SETTLE = 0.2                # seconds after tcpdump says it listens, before traffic
    LINGER = 0.5                # seconds before stopping tcpdump, for the last packets
    CHECK_DROPS = False         # fail when tcpdump reports packets dropped by the kernel

    c: str                      # the namespace whose veth0 is captured

    def add_ns(self, name: str) -> str:
        sh("ip", "netns", "add", name)
        _NS.append(name)
        return name

    def ex(self, ns: str, *cmd: str, check: bool = True):
        return sh("ip", "netns", "exec", ns, *cmd, check=check)

    def spawn(self, ns: str, code: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", textwrap.dedent(code), *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _PROCS.append(p)
        return p

    def capture(self, path: str) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.c, "tcpdump", "-Z", "root", "-i", "veth0", "-s", "200", "-U",
                              "-w", path, self.CAPTURE_FILTER],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _PROCS.append(p)
        deadline = time.time() + 20
        while time.time() < deadline:            # tcpdump says so once it is capturing
            line = p.stderr.readline()
            if "listening on" in line or not line:
                break
        time.sleep(self.SETTLE)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        time.sleep(self.LINGER)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=10)
        if self.CHECK_DROPS and "\n0 packets dropped by kernel" not in "\n" + err:
            raise RuntimeError(f"tcpdump: {err.strip()[-300:]}")
