"""Backends behind one interface, model specs, and the miniature pair."""
from tourney.models.registry import ALIASES, load_backend, parse_spec
from tourney.models.types import Backend, BackendError, GenConfig, Generation, ModelSpec

__all__ = ["ALIASES", "Backend", "BackendError", "GenConfig", "Generation", "ModelSpec", "load_backend", "parse_spec"]
