"""The live path reads the link types of devices that are not Ethernet (issue 10): a tun device (ARPHRD_NONE:
bare IP frames, link type RAW) in each of two namespaces, joined by a small bridge process that copies
packets between them, runs test_live's scenario (the kernel's `ss` view at a quiet moment, timers, SIGTERM)
sniffed by every backend on the client's tun device; the pcap each writes has the device's link type."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from test_live import ENV, TCPFSM, NetPair, check_scenario, root_only, run_scenario, sh

BRIDGE = r"""
import ctypes, fcntl, os, select, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)

def tun_in(ns, name):               # a tun device (IFF_TUN | IFF_NO_PI) created inside namespace ns
    fd = os.open("/var/run/netns/" + ns, os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)
    t = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(t, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))
    return t

a, b = tun_in(sys.argv[1], sys.argv[2]), tun_in(sys.argv[3], sys.argv[4])
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[5])
while time.monotonic() < end:       # bounded: the test's scenario takes ~10 s
    for fd in select.select([a, b], [], [], 0.2)[0]:
        try:
            os.write(b if fd == a else a, os.read(fd, 65536))
        except OSError:             # the other device not up yet: the packet is lost, as on a wire
            pass
"""


class TunPair(NetPair):
    """NetPair plus a tun device in each namespace, bridged; the scenario runs on 10.78.K.1 <-> 10.78.K.2
    over the tuns and is captured on the client's tun device."""

    def __init__(self):
        super().__init__()
        k = self.cip.split(".")[2]
        dev, sdev = f"ttc{k}", f"tts{k}"
        try:
            br = subprocess.Popen([sys.executable, "-c", BRIDGE, self.c, dev, self.s, sdev, "60"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
            self.procs.append(br)
            if br.stdout.readline().strip() != "ready":
                raise RuntimeError(br.stderr.read())
            for ns, d, here, there in ((self.c, dev, f"10.78.{k}.1", f"10.78.{k}.2"),
                                       (self.s, sdev, f"10.78.{k}.2", f"10.78.{k}.1")):
                sh("ip", "-n", ns, "addr", "add", here, "peer", there, "dev", d)
                sh("ip", "-n", ns, "link", "set", d, "up")
        except Exception:
            self.close()
            raise
        self.ifc, self.cip, self.sip = dev, f"10.78.{k}.1", f"10.78.{k}.2"


@root_only
@pytest.mark.parametrize("backend", ["tcpdump", "afpacket", "scapy"])
def test_live_on_tun_device(backend, tmp_path):
    if backend == "tcpdump" and not shutil.which("tcpdump"):
        pytest.skip("tcpdump not installed")
    if not __import__("os").path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun")
    net = TunPair()
    try:
        pcap = str(tmp_path / f"{backend}.pcap")
        r = run_scenario(net, TCPFSM + ["live", "-i", net.ifc, "--backend", backend, "-f", "tcp port 8080",
                                        "--timer", "time_wait=2", "--threshold", "stuck_close_wait=1.5",
                                        "--format", "jsonl", "--stats-interval", "1", "--write", pcap], tmp_path)
        check_scenario(net, r, backend)
        from tcpfsm.capture.reader import open_capture
        cap = open_capture(pcap)
        n = sum(len(b) for b in cap.batches())
        assert cap.info.linktypes == [101] and n == r["events"][-1]["packets"] > 0
        assert dict(cap.info.skipped) == {}
    finally:
        net.close()
