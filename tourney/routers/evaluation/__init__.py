"""Offline evaluation: per-question routing data from two runs, routing metrics, route eval."""
