"""The weights file a model spec runs, and its sha256: what "the same student" means to a router.

A router's threshold is calibrated on one set of weights; the same checkpoint quantized to q4_0
answers with other confidences, so a router file records the student's weights hash and the
commands that use it warn when the file they would run is another one. Only local weights have a
hash here: `gguf:PATH` (the file), `hf:PATH` and the mini aliases (model.safetensors, or the
shards a sharded index names, in order). Served models (openai:, vllm: ids) and replays have none.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tourney.models.registry import parse_spec
from tourney.models.types import BackendError

CHUNK = 1 << 20


def weights_files(spec: str) -> list[Path] | None:
    """The local files holding `spec`'s weights, or None where the spec names no local weights."""
    try:
        parsed = parse_spec(spec)
    except BackendError:
        return None
    target = Path(parsed.target).expanduser()
    if parsed.kind == "gguf":
        return [target] if target.is_file() else None
    if parsed.kind != "hf" or not target.is_dir():
        return None
    if (target / "model.safetensors").is_file():
        return [target / "model.safetensors"]
    index = target / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        except (OSError, ValueError, AttributeError):
            return None
        files = [target / s for s in shards]
        return files if files and all(f.is_file() for f in files) else None
    return None


def weights_sha256(spec: str) -> str | None:
    """sha256 over `spec`'s weights files (in order), or None when it has no local weights."""
    files = weights_files(spec)
    if files is None:
        return None
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
    return h.hexdigest()


def changed_weights_warning(spec: str, recorded: str | None, where: str) -> str | None:
    """One line when `spec`'s weights are not the ones `recorded` (a router's calibration) names;
    None when they match or either side has no hash to compare."""
    if not recorded:
        return None
    now = weights_sha256(spec)
    if now is None or now == recorded:
        return None
    return (f"warning: {where} was calibrated on a student with weights sha256 {recorded[:12]}, but {spec} "
            f"has {now[:12]}; its confidences (and so the threshold) may not hold: recalibrate with "
            "`tourney route calibrate` on runs of this file")
