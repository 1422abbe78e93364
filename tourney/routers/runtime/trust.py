"""A router file is data, never authority.

ROUTER.json names the student and the teacher and how to run them; it is shared like any
artefact, so nothing in it may run code, pick secrets or send them somewhere:

- Backend options (`model_args`) from a router file are limited to SAFE_OPTIONS, each with the
  values it may take. `trust_remote_code` (runs Python shipped beside a checkpoint),
  `api_key_env` (picks which environment variable is sent as a Bearer token) and every option
  not on the list are refused, with the reason, when the file is read.
- An API key goes only to a server the user named: a model spec read from a router file is
  built with no key (`api_key_env=None`); giving the spec on the command line (`tourney submit
  --student/--teacher SPEC`, lm-eval's `student=`/`teacher=`) names the server, and the key is
  then read as usual (RouterBundle.with_specs).

Options that need trust come from the user: `--model-arg` on `tourney eval`, or the overrides
above. There is no switch that makes a router file trusted.
"""
from __future__ import annotations

import re
from typing import Any, Callable

_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d{1,2})?)")
_DTYPES = ("auto", "float32", "float16", "bfloat16")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# Fields of the request itself: extra_body may add to a request, never rewrite what it asks.
_REQUEST_FIELDS = frozenset({"model", "prompt", "messages", "stream", "stream_options", "n", "max_tokens",
                             "max_completion_tokens", "logprobs", "top_logprobs", "echo", "user"})
# Arguments of a chat template call that change what it is rather than fill it in.
_TEMPLATE_CALL = frozenset({"chat_template", "tools", "documents", "tokenize", "return_dict",
                            "return_tensors", "tokenizer_kwargs", "add_generation_prompt", "continue_final_message"})
REFUSED = {
    "trust_remote_code": "it would run Python code shipped with the model",
    "api_key_env": "it would choose which environment variable is sent to the server as a key",
    "api_key": "keys never travel in a router file",
    "model": "it would replace the model the spec names",
    "tokenizer": "it would replace the tokenizer the spec names",
}


def _int(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _num(lo: float, hi: float, open_lo: bool = False) -> Callable[[Any], bool]:
    return lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                      and (lo < v if open_lo else lo <= v) and v <= hi)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 200)


def _template_kwargs(v: Any) -> bool:
    return isinstance(v, dict) and len(v) <= 16 and all(
        isinstance(k, str) and _KEY.fullmatch(k) and k not in _TEMPLATE_CALL and _scalar(x) for k, x in v.items())


def _extra_body(v: Any) -> bool:
    return isinstance(v, dict) and len(v) <= 32 and all(
        isinstance(k, str) and _KEY.fullmatch(k) and k not in _REQUEST_FIELDS for k in v)


# option -> (what it may be, check)
SAFE_OPTIONS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "device": ("auto, cpu, mps, cuda or cuda:N", lambda v: isinstance(v, str) and bool(_DEVICE.fullmatch(v))),
    "dtype": (" or ".join(_DTYPES), lambda v: v in _DTYPES),
    "batch_size": ("an integer in [1, 65536]", _int(1, 65536)),
    "concurrency": ("an integer in [1, 4096]", _int(1, 4096)),
    "chat": ("true or false", lambda v: isinstance(v, bool)),
    "chat_template_kwargs": ("an object of at most 16 plain values that fill in the template", _template_kwargs),
    "timeout_s": ("seconds in (0, 86400]", _num(0.0, 86400.0, open_lo=True)),
    "max_retries": ("an integer in [0, 100]", _int(0, 100)),
    "backoff_s": ("seconds in [0, 60]", _num(0.0, 60.0)),
    "extra_body": ("an object of extra request fields that do not rewrite the request", _extra_body),
    "n_ctx": ("an integer in [1, 1048576]", _int(1, 1_048_576)),
    "n_threads": ("an integer in [1, 1024]", _int(1, 1024)),
    "repeat_penalty": ("a number in (0, 10]", _num(0.0, 10.0, open_lo=True)),
}


def check_model_args(args: dict[str, Any]) -> dict[str, Any]:
    """`model_args` of a router file, if every option is safe; ValueError saying why otherwise."""
    for key, v in args.items():
        if key in REFUSED:
            raise ValueError(f"{key!r} is not accepted from a router file: {REFUSED[key]}; "
                             "give such options on the command line")
        if key not in SAFE_OPTIONS:
            raise ValueError(f"{key[:60]!r} is not an option a router file may set; "
                             f"it may set {', '.join(SAFE_OPTIONS)}")
        what, ok = SAFE_OPTIONS[key]
        if not ok(v):
            raise ValueError(f"{key!r} must be {what}, got {str(v)[:60]!r}")
    return args
