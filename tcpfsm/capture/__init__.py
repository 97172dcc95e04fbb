"""Capture layer: pcap / pcapng (optionally compressed, or stdin) -> columnar TCP `Batch`es."""
from .batch import ACK, COLUMNS, CWR, ECE, FIN, NS, PSH, RST, SYN, URG, Batch, CaptureError, CaptureInfo
from .reader import SKIP_REASONS, Capture, open_capture

__all__ = [
    "open_capture", "Capture", "Batch", "CaptureInfo", "CaptureError", "COLUMNS", "SKIP_REASONS",
    "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS",
]
