"""Datasets, prompts, scoring, the run loop, metrics, reports and the CLI."""
