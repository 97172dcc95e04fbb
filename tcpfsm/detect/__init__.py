"""Findings and the state occupancy they are computed from."""
