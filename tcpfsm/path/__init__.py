"""Path health beside the states (issue 8): Wireshark's per-segment analysis (`segments`), each flow's
path facts (`flows`), the host-pair view (`pairs`) and the findings that need them (tcpfsm.detect.path_rules).

`attach(an, seqan)` is the one entry the API calls once the states are done.
"""
from __future__ import annotations


def attach(an, seqan) -> None:
    """Tie the sequence analysis to the analysis' flows (`an.path`), keep its rows when they were asked for
    (`an.path_segments`), and add the path findings to the flows and to `an.findings`."""
    from ..detect.path_rules import path_findings
    from .flows import PathFacts
    an.path = PathFacts(seqan, an.flows)
    errors = getattr(an, "icmp_errors", None)
    if errors is not None:
        from .icmp import IcmpFacts
        an.icmp = IcmpFacts(errors, an.flows)
        if len(an.icmp):                    # (none: the flows' records say so without asking per flow)
            an.path.icmp = an.icmp
        if errors.dropped:
            an.info.warnings.append(f"ICMP: {errors.dropped} error(s) quoting TCP beyond the first "
                                    f"{errors.MAX_ROWS:,} were not kept")
    an.path_segments = seqan if seqan.keep_rows else None
    if seqan.skipped:
        an.info.warnings.append(f"path health: {seqan.skipped} segment(s) of connections beyond the first "
                                f"{seqan.max_convs:,} were not analysed (the cap on tracked connections)")
    an.path_rtt = seqan.rtt_samples()          # (conversation, acker is lower side, RTT ns, packet)
    path_findings(an)
