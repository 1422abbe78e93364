"""math-verify as a second opinion, always under a time limit.

math-verify (sympy behind it) can run for ever on a hostile answer: `9^{9^{9^{9}}}` asks sympy
for a number with more digits than there are atoms. Its own timeouts use SIGALRM, which only
the main thread may set, so a call from a worker thread (a threaded run loop, a submission's
workers) would have none. Here every call is bounded:

- in the main thread, math-verify's own `parsing_timeout` / `timeout_seconds`;
- in any other thread, the call runs in one helper process (started on first use, with the
  `spawn` method so that no thread or CUDA state is forked); past the limit the process is
  killed and the next call starts a fresh one.

Answers are screened first (`admissible`): long ones and exponent towers never reach sympy.
A call that times out or fails is "not shown equal", and is counted in `STATS` so a report can
say how many verdicts were not reached.
"""
from __future__ import annotations

import multiprocessing as mp
import re
import threading
from dataclasses import dataclass

TIMEOUT_S = 2  # seconds per comparison (math-verify's SIGALRM timeouts take whole seconds)
MAX_LEN = 200  # characters per answer sent to sympy
# An exponent that can be large (a tower x^{y^z}, a long literal 10^{1000}, a product 99^{99\cdot 99})
# can make sympy build a number of unbounded size before any timeout fires inside a C loop. An
# exponent made of short literals, roots, fractions, sums and symbols stays small
# (`2^{\sqrt{4}}`, `e^{i\pi}`, `x^{n+1}`): it is the exponent's text up to its closing brace
# (one level of nested braces, as in `\sqrt{4}`) that is screened.
_EXPONENT = re.compile(r"(?:\^|\*\*)\s*(\{(?:[^{}]|\{[^{}]*\})*\}?|\(?[^\s{}]*)")
_RISKY_IN_EXPONENT = re.compile(r"\d{3,}|\^|\*|\\cdot|\\times|!|\{[^{}]*\{[^{}]*\{")
_RISKY_OTHER = re.compile(r"!|\\binom|\\prod|\\sum|\\int|\\lim|\\infty")


@dataclass
class VerifyStats:
    calls: int = 0
    timeouts: int = 0
    failures: int = 0  # math-verify raised, or its helper process died
    refused: int = 0  # screened out before reaching sympy


STATS = VerifyStats()
_lock = threading.Lock()
_worker: tuple[mp.process.BaseProcess, object] | None = None


def admissible(text: str) -> bool:
    """Whether an answer is short and tame enough to hand to sympy at all."""
    if len(text) > MAX_LEN or _RISKY_OTHER.search(text):
        return False
    return not any(_RISKY_IN_EXPONENT.search(m.group(1)) for m in _EXPONENT.finditer(text))


def _wrap(s: str) -> str:
    return s if "$" in s else f"${s}$"  # math-verify wants math delimiters


def _compare(pred: str, gold: str, timeout: float | None) -> bool:
    from math_verify import parse, verify

    g = parse(_wrap(gold), parsing_timeout=timeout)  # type: ignore[arg-type]
    p = parse(_wrap(pred), parsing_timeout=timeout)  # type: ignore[arg-type]
    return bool(g and p and verify(g, p, timeout_seconds=timeout))


def _serve(conn) -> None:  # runs in the helper process
    while True:
        try:
            pred, gold = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", _compare(pred, gold, None)))
        except Exception as e:  # noqa: BLE001 -- reported to the caller as a failed comparison
            conn.send(("error", f"{type(e).__name__}: {e}"))


def _in_helper_process(pred: str, gold: str, timeout: float) -> bool | None:
    """The comparison in the helper process; None when it timed out or the process died."""
    global _worker
    with _lock:
        if _worker is None or not _worker[0].is_alive():
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="tourney-math-verify")
            proc.start()
            _worker = (proc, parent)
        proc, conn = _worker
        try:
            conn.send((pred, gold))
            # The first call also pays the helper's start-up (importing sympy): allow for it once.
            if conn.poll(timeout + (10.0 if not getattr(proc, "_warm", False) else 0.0)):
                status, value = conn.recv()
                proc._warm = True  # type: ignore[attr-defined]
                if status == "ok":
                    return bool(value)
                STATS.failures += 1
                return False
        except (EOFError, OSError, BrokenPipeError):
            STATS.failures += 1
        else:
            STATS.timeouts += 1
        proc.kill()
        proc.join(1.0)
        _worker = None
        return None


def verify_equal(pred: str, gold: str, timeout: int = TIMEOUT_S) -> bool:
    """math-verify's verdict on two short answers; False when it cannot decide in time."""
    STATS.calls += 1
    if not (admissible(pred) and admissible(gold)):
        STATS.refused += 1
        return False
    try:
        import math_verify  # noqa: F401
    except ImportError:  # a minimal install still scores plain numbers
        return False
    if threading.current_thread() is threading.main_thread():
        try:
            return _compare(pred, gold, timeout)
        except TimeoutError:
            STATS.timeouts += 1
            return False
        except Exception:  # noqa: BLE001 -- sympy fails on odd input; that is "not shown equal", counted
            STATS.failures += 1
            return False
    return bool(_in_helper_process(pred, gold, timeout))
