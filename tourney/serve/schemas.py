"""Request and response bodies of the OpenAI-compatible endpoints, and the OpenAI error shape.

Requests are parsed with pydantic before anything else looks at them. Fields OpenAI clients send
that routing does not use (frequency_penalty, tools, user, ...) are accepted and ignored, as
OpenAI-compatible servers do; the fields that are used are checked for type and range, and a
bad one is a 400 naming it. Question metadata that the OpenAI API has no field for (an id, a
question type, multiple-choice options, a gold answer for later scoring, a deadline) travels in
the extension object `tourney` (the SDKs send it with `extra_body={"tourney": {...}}`).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TEXT = 200_000  # characters in one question; the body limit usually bites first


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class QuestionMeta(_Strict):
    """What the server cannot read from an OpenAI request: how to name, type and score a question."""

    id: str | None = Field(default=None, min_length=1, max_length=200)
    type: str | None = Field(default=None, min_length=1, max_length=100)
    choices: list[Annotated[str, Field(max_length=10_000)]] | None = Field(default=None, min_length=2, max_length=26)
    answer: str | None = Field(default=None, max_length=1_000)  # gold, when known: the log scores it

    @field_validator("answer", mode="before")
    @classmethod
    def _number_as_text(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return str(v)
        return v

    @field_validator("id", "type")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        if v is not None and not v.isprintable():
            raise ValueError("expected printable text (no control characters)")
        return v


class Extension(QuestionMeta):
    """The `tourney` object of a request: one question's metadata, or `questions` for a
    /v1/completions request with a list of prompts (same length), and an optional deadline."""

    deadline_ms: float | None = Field(default=None, gt=0)
    questions: list[QuestionMeta] | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class _Common(_Lenient):
    model: str = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=1)  # routing gives one answer per question
    stop: Union[str, list[str], None] = None
    temperature: float | None = Field(default=None, ge=0, le=2)  # accepted; decoding follows ROUTER.json
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    tourney: Extension | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: Any) -> list[str]:
        if v is None:
            return []
        stops = [v] if isinstance(v, str) else list(v)
        if len(stops) > 8 or any(len(s) > 200 for s in stops):
            raise ValueError("at most 8 stop strings of at most 200 characters")
        return [s for s in stops if s]

    def token_cap(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class TextPart(_Lenient):
    type: Literal["text"]
    text: str = Field(max_length=MAX_TEXT)


class ChatMessage(_Lenient):
    role: str = Field(min_length=1, max_length=50)
    content: Union[str, list[Union[TextPart, dict[str, Any]]], None] = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content or [] if isinstance(p, TextPart))


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1_000)


class CompletionRequest(_Common):
    prompt: Union[str, list[str]]

    @field_validator("prompt")
    @classmethod
    def _texts(cls, v: Any) -> Any:
        texts = [v] if isinstance(v, str) else v
        if not texts:
            raise ValueError("expected a prompt, or a non-empty list of prompts")
        if any(len(t) > MAX_TEXT for t in texts):
            raise ValueError(f"a prompt is longer than {MAX_TEXT} characters")
        return v


# -- responses --------------------------------------------------------------------------------

class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Decision(BaseModel):
    """What happened to one question: the `tourney` object of a response (and its x-tourney-* headers)."""

    id: str  # the question id (the request's tourney.id, else one the server made)
    mode: str  # router | router-speed | router-accuracy | student | teacher
    model: str  # whose answer stands: student | teacher | fallback (nobody answered in time)
    answer: str  # the final answer read from it (the fallback "0" / "A" when nobody answered)
    confidence: float | None = None  # the router's confidence in the student's answer
    threshold: float | None = None  # escalate when confidence < threshold
    escalated: bool = False  # the teacher was asked
    deadline_fallback: bool = False  # a model missed the deadline and a fallback answer stands
    fallback: bool = False  # the answer is not from the model the policy chose (failure or deadline)
    student_latency_ms: float = 0.0
    teacher_latency_ms: float = 0.0
    total_latency_ms: float = 0.0
    deadline_ms: float = 0.0
    attempts: int = 0  # teacher calls made (retries included)
    error: str | None = None  # what failed on the way, if anything


class ChatChoice(BaseModel):
    index: int
    message: dict[str, Any]
    finish_reason: str | None
    logprobs: None = None


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    tourney: Decision


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage
    tourney: Decision | list[Decision]  # one per prompt when the request held a list


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class Problem(Exception):
    """A request the server will not answer: an HTTP status and an OpenAI-shaped error body."""

    KINDS = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
             502: "upstream_error", 503: "service_unavailable", 504: "timeout_error"}

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.KINDS.get(self.status, "server_error"), self.code, self.param)
