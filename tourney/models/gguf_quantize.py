"""Quantized GGUF files through llama.cpp's own quantizer (llama_model_quantize), never our own.

`export_quantized` writes the checkpoint as f32 GGUF (gguf_export), hands it to llama.cpp with
its default quantization parameters and the requested file type, then reads the result back with
the `gguf` package to learn what llama.cpp actually stored per tensor. llama.cpp keeps a mix, not
one type: 1-D norms stay f32, the output matrix (or, when tied, the token embeddings) gets its
own type, and a tensor whose rows do not divide into the format's block (256 values for K-quants;
the miniature's rows are 64, 128, 192 and 384 long) falls back to a 32-block type. Every 2-D
tensor not stored as the requested type is reported, in the command's output and in the file's
metadata under SUBSTITUTED_KEY, so a file says itself what "q4_k_m" meant for it.

No importance matrix: llama.cpp's q4_0/q5_0/q8_0 ignore one, and the K-quant mixes would need a
calibration pass we have not built (it is the quantizer's `imatrix` parameter when we do).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tourney.models.types import BackendError

# --dtype name -> (llama_cpp ftype constant, the ggml type llama.cpp aims at for most matrices)
QUANT_TYPES: dict[str, tuple[str, str]] = {
    "q8_0": ("LLAMA_FTYPE_MOSTLY_Q8_0", "Q8_0"),
    "q5_0": ("LLAMA_FTYPE_MOSTLY_Q5_0", "Q5_0"),
    "q4_0": ("LLAMA_FTYPE_MOSTLY_Q4_0", "Q4_0"),
    "q4_k_m": ("LLAMA_FTYPE_MOSTLY_Q4_K_M", "Q4_K"),
    "q3_k_m": ("LLAMA_FTYPE_MOSTLY_Q3_K_M", "Q3_K"),
    "q2_k": ("LLAMA_FTYPE_MOSTLY_Q2_K", "Q2_K"),
}
DTYPES = ("f32", "f16", *QUANT_TYPES)
REQUESTED_KEY = "tourney.quantization.requested"
# One line per substituted matrix ("" when none): GGUF has no empty arrays, so a string, not a list.
SUBSTITUTED_KEY = "tourney.quantization.substituted"


@dataclass(frozen=True)
class Substitution:
    """One matrix llama.cpp stored in another type than the one the file type names."""

    tensor: str
    wanted: str  # ggml type name, e.g. "Q4_K"
    got: str  # what the file holds, e.g. "Q5_0"
    row_length: int
    reason: str

    def line(self) -> str:
        return f"{self.tensor}: {self.wanted} -> {self.got} ({self.reason})"


@dataclass(frozen=True)
class QuantizedFile:
    path: Path
    dtype: str  # the --dtype asked for
    tensor_types: dict[str, str]  # every tensor's stored ggml type, as the file says
    substituted: tuple[Substitution, ...]
    size_bytes: int


def tensor_types(path: str | os.PathLike[str]) -> dict[str, str]:
    """Tensor name -> ggml type name, read from the file itself."""
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


def _reason(row: int, wanted: str) -> str:
    import gguf

    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[wanted]][0]
    if row % block:
        return f"row length {row} is not a multiple of {wanted}'s block of {block}"
    if row % 256:  # llama.cpp gives the output matrix a 256-block type and falls back when rows do not fit
        return f"llama.cpp's per-tensor mix; row length {row} fits no 256-value K-quant block"
    return "llama.cpp's per-tensor mix for this file type"


def substitutions(path: str | os.PathLike[str], dtype: str) -> tuple[Substitution, ...]:
    """Matrices in the quantized file at `path` that are not stored as `dtype`'s own type."""
    import gguf

    wanted = QUANT_TYPES[dtype][1]
    out = []
    for t in gguf.GGUFReader(str(path)).tensors:
        if len(t.shape) < 2 or t.tensor_type.name == wanted:
            continue  # 1-D tensors (norms) stay f32 in every llama.cpp file type
        row = int(t.shape[0])  # ggml's ne[0]: the length of one row
        out.append(Substitution(t.name, wanted, t.tensor_type.name, row, _reason(row, wanted)))
    return tuple(out)


def substituted_text(subs: tuple[Substitution, ...]) -> str:
    return "\n".join(s.line() for s in subs)


def llama_quantize(src: Path, dst: Path, dtype: str, nthread: int = 1) -> None:
    """llama.cpp's quantizer, default parameters, `dtype`'s file type; `src` must be f32/f16 GGUF."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendError(f"quantizing to {dtype} needs llama-cpp-python ({exc}); "
                           "pip install 'tourney[llamacpp]'") from None
    ftype_name = QUANT_TYPES[dtype][0]
    ftype = getattr(llama_cpp, ftype_name, None)
    if ftype is None:
        raise BackendError(f"this llama-cpp-python has no {ftype_name}; cannot write {dtype}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = nthread  # 0 would take every core of a shared machine
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0 or not dst.is_file():
        raise BackendError(f"llama.cpp could not quantize {src} to {dtype} (llama_model_quantize returned {rc})")


def _copy_with_metadata(src: Path, dst: Path, extra: dict[str, str]) -> None:
    """Rewrite `src` at `dst` with every key and tensor unchanged plus `extra` keys; the tensors'
    bytes are copied as they are (the gguf package's own metadata-editing recipe)."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(str(dst), arch=arch, endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    for key, value in extra.items():
        writer.add_key_value(key, value, gguf.GGUFValueType.STRING)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in reader.tensors:
            writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    finally:
        writer.close()


def export_quantized(checkpoint_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], dtype: str,
                     nthread: int = 1) -> QuantizedFile:
    """Export `checkpoint_dir` as f32 GGUF, quantize it with llama.cpp to `dtype`, and record in the
    file (REQUESTED_KEY, SUBSTITUTED_KEY) which matrices llama.cpp stored otherwise."""
    from tourney.models.gguf_export import export_gguf

    if dtype not in QUANT_TYPES:
        raise ValueError(f"dtype must be one of {', '.join(QUANT_TYPES)}, got {dtype!r}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    f32 = out.with_name(out.name + ".f32.partial")
    quant = out.with_name(out.name + ".quant.partial")
    final = out.with_name(out.name + ".partial")
    try:
        export_gguf(checkpoint_dir, f32, dtype="f32")
        llama_quantize(f32, quant, dtype, nthread=nthread)
        subs = substitutions(quant, dtype)
        _copy_with_metadata(quant, final, {REQUESTED_KEY: dtype, SUBSTITUTED_KEY: substituted_text(subs)})
        os.replace(final, out)  # a crash never leaves a half-written file at `out`
    finally:
        for p in (f32, quant, final):
            p.unlink(missing_ok=True)
    return QuantizedFile(path=out, dtype=dtype, tensor_types=tensor_types(out), substituted=subs,
                         size_bytes=out.stat().st_size)


def describe(result: QuantizedFile) -> list[str]:
    """What the command prints: the file, its size, the type mix, and every substitution."""
    counts: dict[str, int] = {}
    for kind in result.tensor_types.values():
        counts[kind] = counts.get(kind, 0) + 1
    mix = ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    lines = [f"wrote {result.path} ({result.size_bytes / 2**20:.2f} MiB, {result.dtype}; tensors: {mix})"]
    if result.substituted:
        lines.append(f"llama.cpp stored {len(result.substituted)} matrix(es) in another type than "
                     f"{QUANT_TYPES[result.dtype][1]} (also in the file's {SUBSTITUTED_KEY}):")
        lines += [f"  {s.line()}" for s in result.substituted]
    return lines
