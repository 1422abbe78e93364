"""Choosing the mode before submitting: what `tourney submit` would do, planned from dev runs."""
