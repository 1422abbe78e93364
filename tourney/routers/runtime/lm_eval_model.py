"""The lm-evaluation-harness model `tourney`: the student, the teacher, or the cascade between them.

    model_args: router=ROUTER.json [mode=balanced|speed|accuracy] [student=SPEC] [teacher=SPEC]
                student=SPEC                 (the student alone; mode speed)
                teacher=SPEC                 (the teacher alone; mode accuracy)
                choice_threshold=P           (see loglikelihood below)
                chat=true, device=cuda, ...  (backend options for specs given here)

Registration. lm-eval 0.4.13 discovers no external models (it reads no entry points), so this
module must be imported before lm-eval looks the name up: `python -m tourney.cli.lm_eval ...`
(the same arguments as `lm-eval`) does that, and so does `import routers.runtime.lm_eval_model` before
`lm_eval.simple_evaluate(model="tourney", ...)`. Passing `TourneyLM(...)` itself as `model` needs
no registration at all.

generate_until. Each request's context is sent as it is (lm-eval has already formatted it), the
generation stops at the request's `until` strings and after `max_gen_toks` tokens; decoding
follows the router file's settings (greedy unless the student's calibration run sampled), other
sampling kwargs from the task are ignored. In balanced mode the confidence is computed from the
student's output as in routers.runtime.cascade; question features read the whole context (few-shot
examples included), so a router using them should be run zero-shot.

loglikelihood. Requests sharing a document and context (the options of a multiple-choice
question) are scored together with the backend's `score_choices`. In balanced mode the student's
scores are kept unless the question is escalated, in which case the teacher's replace them:
with `choice_threshold=P`, when the softmax probability of the student's best option is below P;
otherwise with the router itself when it reads option scores (mc_probability, mc_margin); a
router that reads none has no evidence here and escalates every question (a warning says so).
`is_greedy` (what lm-eval's `acc` of loglikelihood tasks such as lambada reads) is found by asking
the model that scored the continuation for its greedy continuation of the context, with room
for as many tokens as the continuation has bytes, and checking that it begins with the
continuation's text. `greedy_check=auto` (the default) does that for contexts with one
continuation (loglikelihood tasks), not for multiple-choice options, whose metrics compare the
options' scores and never read it (there it is reported False); `always` / `never` force it.
A text check, not a token check: a greedy output that spells the continuation with other
tokens counts as greedy here, where lm-eval's `hf` model compares token ids.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import lm_eval.models  # noqa: F401 -- built-in models first: get_model imports them only into an empty registry
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import simple_parse_args_string

from tourney.errors import ConfigError
from tourney.harness.types import Question, SampleResult
from tourney.models.registry import load_backend
from tourney.models.types import Backend, GenConfig
from tourney.routers.runtime.bundle import ModelSettings, RouterBundle
from tourney.routers.runtime.cascade import Cascade, backend_options, choice_router_signals
from tourney.routers.features.signals import mc_probability

log = logging.getLogger(__name__)
_LMEVAL_KEYS = ("batch_size", "max_batch_size", "device")
_GREEDY_CHECKS = ("auto", "always", "never")


def _cut(text: str, until: list[str]) -> str:
    for stop in until:
        if stop:
            i = text.find(stop)
            if i != -1:
                text = text[:i]
    return text


@register_model("tourney")
class TourneyLM(LM):
    def __init__(self, router: str | None = None, student: str | None = None, teacher: str | None = None,
                 mode: str | None = None, choice_threshold: float | None = None,
                 batch_size: Any = None, max_batch_size: Any = None, device: str | None = None,
                 model: str | None = None, greedy_check: str = "auto", **backend_args: Any) -> None:
        # `model` is a display name only: lm-eval names its results folder after it (cli.lm_eval).
        super().__init__()
        self.name = model
        if router:
            bundle = RouterBundle.load(router).with_specs(student, teacher)
            calibrated, s_set, t_set = bundle.router, bundle.student, bundle.teacher
            mode = mode or "balanced"
        elif student and teacher:
            raise ConfigError("tourney: student= and teacher= together need router=ROUTER.json (the threshold); "
                             "give router=, or one model alone")
        elif student or teacher:
            calibrated = None
            s_set = ModelSettings(spec=student) if student else None
            t_set = ModelSettings(spec=teacher) if teacher else None
            mode = mode or ("speed" if student else "accuracy")
        else:
            raise ConfigError("tourney: give router=ROUTER.json, student=SPEC or teacher=SPEC in model_args")
        if choice_threshold is not None and not 0.0 <= float(choice_threshold) <= 1.0:
            raise ConfigError(f"tourney: choice_threshold must be a probability in [0, 1], got {choice_threshold}")
        self.choice_threshold = None if choice_threshold is None else float(choice_threshold)
        if greedy_check not in _GREEDY_CHECKS:
            raise ConfigError(f"tourney: greedy_check must be one of {', '.join(_GREEDY_CHECKS)}, got {greedy_check!r}")
        self.greedy_check = greedy_check
        self.mode = mode
        self._warned = False
        extra = dict(backend_args)
        if isinstance(batch_size, int) or (isinstance(batch_size, str) and batch_size.isdigit()):
            extra.setdefault("batch_size", int(batch_size))
        if device and str(device).startswith("cuda"):
            import torch

            if not torch.cuda.is_available():  # lm-eval's CLI defaults to cuda even on a CPU machine
                log.warning("tourney: device %s asked for but CUDA is unavailable; using the CPU", device)
                device = None
        if device:
            extra.setdefault("device", str(device))
        student_b = self._load(s_set, extra) if mode != "accuracy" and s_set else None
        teacher_b = self._load(t_set, extra) if mode != "speed" and t_set else None
        self.cascade = Cascade(student_b, teacher_b, calibrated, mode, student_settings=s_set, teacher_settings=t_set)

    @staticmethod
    def _load(settings: ModelSettings, extra: dict[str, Any]) -> Backend:
        from tourney.models.registry import parse_spec

        opts = backend_options(settings)
        kind = parse_spec(settings.spec).kind
        for key, value in extra.items():
            if key in ("batch_size", "device") and kind != "hf":
                continue  # only the transformers backend takes these
            opts.setdefault(key, value)
        return load_backend(settings.spec, **opts)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "TourneyLM":
        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict | None = None) -> "TourneyLM":
        args = dict(arg_dict)
        for key, value in (additional_config or {}).items():
            if key in _LMEVAL_KEYS and value is not None:
                args.setdefault(key, value)
        for key in ("router", "student", "teacher", "mode", "model", "greedy_check"):  # paths, specs and names stay text
            if key in args and args[key] is not None:
                args[key] = str(args[key])
        return cls(**args)

    # -- generation -------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            kwargs = req.args[1] if len(req.args) > 1 else {}
            groups.setdefault(json.dumps(kwargs, sort_keys=True, default=str), []).append(i)
        for key, idx in groups.items():
            kwargs = json.loads(key)
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_tokens = kwargs.get("max_gen_toks")
            contexts = [requests[i].args[0] for i in idx]
            questions = [Question(id=f"lm-eval-{i}", question=c, answer="") for i, c in zip(idx, contexts)]
            records = self.cascade.answer(questions, prompts=contexts, stop=until,
                                          max_tokens=int(max_tokens) if max_tokens else None)
            for i, rec in zip(idx, records):
                out[i] = _cut(rec.output, until)
                self.cache_hook.add_partial("generate_until", requests[i].args, out[i])
        return [o or "" for o in out]

    # -- scoring ----------------------------------------------------------------------------
    def _escalate(self, scores: list[float], context: str) -> bool:
        if self.choice_threshold is not None:
            p = mc_probability([], scores)
            return p is None or p < self.choice_threshold
        router = self.cascade.router
        if not choice_router_signals(router) and not self._warned:
            self._warned = True
            log.warning("tourney: the router reads no option scores; every log-likelihood question goes to "
                        "the teacher (pass choice_threshold=P to route on the student's option probability)")
        row = SampleResult(id="ll", question=context, type="default", sample=0, output="", prediction=None,
                           gold="", correct=False, latency_s=0.0, ttft_s=None, prompt_tokens=0,
                           completion_tokens=0, error="log-likelihood request: no generation")
        return router.to_teacher(router.confidence([row], choice_logliks=scores, question_text=context))

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        groups: dict[tuple, list[int]] = {}
        for i, req in enumerate(requests):
            context = req.args[0]
            groups.setdefault((getattr(req, "task_name", None), getattr(req, "doc_id", None), context), []).append(i)
        keys = list(groups)
        contexts = [k[2] for k in keys]
        options = [[requests[i].args[1] for i in groups[k]] for k in keys]
        c = self.cascade
        first = c.teacher if self.mode == "accuracy" else c.student
        scores = first.score_choices(contexts, options)
        scorer = [first] * len(keys)  # the model whose scores are kept, which is asked for is_greedy
        if self.mode == "balanced":
            up = [j for j, s in enumerate(scores) if self._escalate(list(s), contexts[j])]
            if up:
                better = c.teacher.score_choices([contexts[j] for j in up], [options[j] for j in up])
                for j, s in zip(up, better):
                    scores[j], scorer[j] = s, c.teacher
        greedy = self._greedy(contexts, options, scorer)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        for j, (k, s) in enumerate(zip(keys, scores)):
            for i, v, g in zip(groups[k], s, greedy[j]):
                out[i] = (float(v), g)
                self.cache_hook.add_partial("loglikelihood", requests[i].args, out[i])
        return out

    def _greedy(self, contexts: list[str], options: list[list[str]], scorer: list[Backend]) -> list[list[bool]]:
        """Per context, per continuation: is it what the scoring model writes greedily (module doc)?"""
        out = [[False] * len(opts) for opts in options]
        if self.greedy_check == "never":
            return out
        asked = [j for j, opts in enumerate(options) if self.greedy_check == "always" or len(opts) == 1]
        by_backend: dict[int, list[int]] = {}
        for j in asked:
            by_backend.setdefault(id(scorer[j]), []).append(j)
        for idx in by_backend.values():
            backend = scorer[idx[0]]
            room = max(len(o.encode("utf-8")) for j in idx for o in options[j])
            gens = backend.generate([contexts[j] for j in idx], GenConfig(max_tokens=max(room, 1), temperature=0.0))
            for j, samples in zip(idx, gens):
                text = samples[0].text if samples and not samples[0].error else None
                out[j] = [text is not None and bool(o) and text.startswith(o) for o in options[j]]
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            "tourney: loglikelihood_rolling (perplexity tasks such as wikitext) is not supported: the "
            "project's backends score a continuation given a context (score_choices), not a whole "
            "document in rolling windows. Use lm-eval's own `hf` or `local-completions` model for these tasks.")
