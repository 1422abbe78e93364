"""Backends behind one interface, model specs, and the miniature pair."""
from models.registry import ALIASES, load_backend, parse_spec
from models.types import Backend, BackendError, GenConfig, Generation, ModelSpec

__all__ = ["ALIASES", "Backend", "BackendError", "GenConfig", "Generation", "ModelSpec", "load_backend", "parse_spec"]
