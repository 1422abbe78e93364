"""Signals and features: what a router reads of a question and the student's answer."""
