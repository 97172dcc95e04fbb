"""Path health beside the states (issue 8): Wireshark's per-segment analysis, per-flow path facts."""
