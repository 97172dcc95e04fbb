"""Renderers: records (JSON/JSONL contracts) and text (rich tables, timelines, netstat)."""
