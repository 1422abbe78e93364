"""Fitting and selection: the models behind a score, choosing them by cross-validation, the saved file."""
