"""A router file that can answer new questions: the calibrated router plus how to run the pair.

`tourney route calibrate` writes ROUTER.json: the CalibratedRouter's own fields (so
`CalibratedRouter.load` still reads it) and, beside them, the student's and the teacher's model
specs and generation settings read from the dev runs' run.json. The threshold is only valid for
confidences computed the way the dev run computed them: the same samples K, temperature, token
budget and logprobs. The cascade therefore runs the student with exactly these settings.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from tourney.harness.jsonl import json_safe
from tourney.harness.pipeline import Prompting
from tourney.harness.prompts import get_template
from tourney.harness.rundir import RunDir
from tourney.errors import BackendError, ConfigError, OptionError
from tourney.harness.types import DataError
from tourney.models.registry import replays_recordings
from tourney.models.types import Backend, GenConfig
from tourney.routers.policies.calibrate import CalibratedRouter

from tourney.routers.fitting.router_file import FORMAT, ModelSettingsSchema  # noqa: F401 -- FORMAT re-exported
from tourney.routers.features.signals import CHOICE_SIGNALS, LOGPROB_SIGNALS, SAMPLE_SIGNALS  # noqa: F401 -- re-exported


def needs_samples(signals: Sequence[str]) -> bool:
    return any(s in SAMPLE_SIGNALS for s in signals)


def needs_logprobs(signals: Sequence[str]) -> bool:
    return any(s in LOGPROB_SIGNALS for s in signals)


@dataclass(frozen=True)
class ModelSettings:
    """How one model answers: its spec and the generation settings of its calibration run."""

    spec: str  # model spec string (hf:PATH, openai:MODEL@URL, alias, ...)
    samples: int = 1  # samples per question (K); the answer is sample 0's
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    logprobs: int | None = None  # None: none; 0: chosen-token logprobs
    seed: int = 0
    template: str | None = None  # prompt template name; None picks one per question
    chat: bool = False  # chat messages rather than raw text
    model_args: dict[str, Any] = field(default_factory=dict)  # backend options (device, ...)
    # False for a spec read from a router file: no API key goes to a server the user did not
    # name (routers.runtime.trust). Never written to a file, so no file can turn it on.
    send_api_key: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.spec, str) or not self.spec:
            raise ValueError("field 'spec': expected a model spec string")
        if self.samples < 1:
            raise ValueError(f"field 'samples': expected >= 1, got {self.samples}")
        if self.samples > 1 and self.temperature == 0.0 and not replays_recordings(self.spec):
            raise ValueError("field 'samples': more than one sample needs temperature > 0")
        GenConfig(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                  logprobs=self.logprobs)  # range checks, with GenConfig's messages
        if self.template is not None:
            get_template(self.template)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "ModelSettings":
        """The settings an evaluation run used, from its run.json (harness.rundir.RunMeta)."""
        run = RunDir(run_dir)
        meta = run.meta()
        gen, ident = meta.generation, meta.identity
        try:
            return cls(spec=meta.model, samples=gen.samples or 1,
                       temperature=0.0 if gen.temperature is None else gen.temperature,
                       top_p=1.0 if gen.top_p is None else gen.top_p,
                       max_tokens=gen.max_tokens or 512, logprobs=gen.logprobs, seed=gen.seed or 0,
                       template=ident.get("template"), chat=bool(ident.get("chat", False)))
        except (TypeError, ValueError) as e:
            raise DataError(f"{run.meta_path}: {e}") from None

    def gen_config(self, stop: tuple[str, ...], *, n: int | None = None, logprobs: int | None | str = "same",
                   max_tokens: int | None = None, temperature: float | None = None) -> GenConfig:
        return GenConfig(max_tokens=max_tokens or self.max_tokens,
                         temperature=self.temperature if temperature is None else temperature,
                         top_p=self.top_p, stop=tuple(stop), n=n or self.samples,
                         logprobs=self.logprobs if logprobs == "same" else logprobs, seed=self.seed)

    def prompting(self) -> Prompting:
        """How this model's questions are prompted: the same rule as the run loop's."""
        return Prompting(template=self.template, chat=self.chat)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["send_api_key"]
        return d

    @classmethod
    def from_router_file(cls, d: "ModelSettingsSchema", where: str, role: str) -> "ModelSettings":
        """Settings a router file gives (validated by routers.fitting.router_file, options allow-listed
        by routers.runtime.trust); built to send no API key (routers.runtime.trust). Errors name the file, the
        model and the field."""
        from tourney.models.registry import parse_spec

        try:
            parse_spec(d.spec)  # a spec no backend reads fails here, naming its field, not when loaded
        except BackendError as e:
            raise DataError(f"{where}: {role} model: field '{role}.spec': {e}") from None
        try:
            return cls(**d.model_dump(), send_api_key=False)
        except (TypeError, ValueError) as e:
            named = str(e).replace("field '", f"field '{role}.", 1)  # "field 'samples'" -> "field 'teacher.samples'"
            raise DataError(f"{where}: {role} model: {named}") from None


@dataclass
class RouterBundle:
    """ROUTER.json: a calibrated router, the settings to run it, and where it was calibrated."""

    router: CalibratedRouter
    student: ModelSettings | None = None  # None in a bare router file: give specs on the CLI
    teacher: ModelSettings | None = None
    target: str | None = None  # the target as the user typed it, e.g. "share=0.3"
    data: dict[str, Any] = field(default_factory=dict)  # runs used, split, question counts
    # sha256 of the student's weights when it was calibrated (models.weights_file): a threshold
    # holds for those weights only, so commands warn when they would run other ones
    student_sha256: str | None = None
    source: str | None = None  # the router file it was read from; None when built in memory

    def to_dict(self) -> dict[str, Any]:
        return {**self.router.to_dict(), "target": self.target,
                "student": None if self.student is None else self.student.to_dict(),
                "teacher": None if self.teacher is None else self.teacher.to_dict(),
                "data": self.data, "student_sha256": self.student_sha256}

    def student_warning(self, where: str) -> str | None:
        """One line when the student this bundle would run has other weights than it was calibrated
        on (e.g. the f32 student's router in front of its q4_0 file); None otherwise."""
        from tourney.models.weights_file import changed_weights_warning

        if self.student is None:
            return None
        return changed_weights_warning(self.student.spec, self.student_sha256, where)

    def save(self, path: str | Path) -> None:
        text = json.dumps(json_safe(self.to_dict(), None, "string"), indent=2, sort_keys=True, allow_nan=False)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "RouterBundle":
        """Read ROUTER.json (or a router file without model settings) as untrusted data: every
        fault is a DataError naming the file and field (routers.fitting.router_file, routers.runtime.trust)."""
        from tourney.routers.fitting.model_io import router_from_schema
        from tourney.routers.fitting.router_file import load_router_file

        where = str(path)
        raw = load_router_file(path)
        settings = {role: None if value is None else ModelSettings.from_router_file(value, where, role)
                    for role, value in (("student", raw.student), ("teacher", raw.teacher))}
        return cls(router=router_from_schema(raw, where), student=settings["student"], teacher=settings["teacher"],
                   target=raw.target, data=dict(raw.data), source=where,
                   student_sha256=raw.student_sha256)

    def load_model(self, role: str, **options: Any) -> Backend:
        """Build the backend of `role` ("student" or "teacher") with `options`. When the router
        file chose what fails (its spec, or its model_args), the one-line error names the file,
        the model and the field; a spec the user gave (with_specs) fails as the user's own."""
        from tourney.models.registry import load_backend

        settings = getattr(self, role)
        try:
            return load_backend(settings.spec, **options)
        except (DataError, ConfigError, BackendError) as e:
            from_options = isinstance(e, OptionError)
            if self.source is None or (settings.send_api_key and not from_options):
                raise
            field = "model_args" if from_options else "spec"
            raise DataError(f"{self.source}: {role} model: field '{role}.{field}': {e}") from None

    def with_specs(self, student: str | None = None, teacher: str | None = None) -> "RouterBundle":
        """The same bundle with model specs replaced (e.g. the same model served elsewhere). A
        spec given here is the user's: its server may receive the user's API key."""
        def swap(s: ModelSettings | None, spec: str | None) -> ModelSettings | None:
            if spec is None:
                return s
            return ModelSettings(spec=spec) if s is None else replace(s, spec=spec, send_api_key=True)
        return RouterBundle(self.router, swap(self.student, student), swap(self.teacher, teacher),
                            self.target, dict(self.data), source=self.source, student_sha256=self.student_sha256)
