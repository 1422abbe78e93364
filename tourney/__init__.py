"""tourney: distil a large reasoning model into a fast one, measure both, route between them.

Layers, each importing only those below it:

    tourney.cli       the commands (one module per command group)
    tourney.routers   confidence signals, calibration, cascade, submissions, routing metrics
    tourney.trainers  teacher CoT, rejection sampling, curriculum, SFT/KD/feature-KD training
    tourney.harness   questions, prompts, scoring, the run loop, run directories, metrics, reports
    tourney.models    backends behind one protocol, model specs, the miniature pair, GGUF export
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("tourney")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0.0.0+source"
