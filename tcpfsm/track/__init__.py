"""Connection identity and the flow table (see flowtable.py)."""
from .flowtable import Flow, FlowTable, hostport, ip_text

__all__ = ["Flow", "FlowTable", "hostport", "ip_text"]
