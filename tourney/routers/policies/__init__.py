"""Policies and thresholds: calibrating a threshold to a target, per-type maps, when a question is decided."""
