"""Everything one `tourney serve` depends on, with documented and range-checked fields."""
from __future__ import annotations

from dataclasses import dataclass

from tourney.errors import ConfigError

# The names a request's `model` picks, in the order /v1/models lists them.
ROUTER, ROUTER_SPEED, ROUTER_ACCURACY, STUDENT, TEACHER = (
    "router", "router-speed", "router-accuracy", "student", "teacher")
SERVE_MODES = (ROUTER, ROUTER_SPEED, ROUTER_ACCURACY, STUDENT, TEACHER)


@dataclass(frozen=True)
class ServeConfig:
    """Options of one server. A question's deadline counts from when its request reaches the route."""

    router: str  # ROUTER.json from `tourney route calibrate` (names both models)
    host: str = "127.0.0.1"
    port: int = 8000
    deadline_ms: float = 30_000.0  # per question; a request may ask for less (tourney.deadline_ms), never more
    api_key_env: str | None = None  # environment variable holding the key clients must send
    student_spec: str | None = None  # override ROUTER.json's student spec
    teacher_spec: str | None = None  # override ROUTER.json's teacher spec
    max_batch: int = 16  # in-process models: questions per batch at most
    batch_window_ms: float = 5.0  # in-process models: how long the first question of a batch waits for company
    upstream_concurrency: int = 8  # requests in flight to an upstream (OpenAI-compatible) model
    max_inflight: int = 256  # requests being answered at once; beyond this a request gets 429
    max_body_bytes: int = 1_000_000  # a larger body gets 413
    max_questions: int = 64  # prompts in one /v1/completions request
    retry_backoff_ms: float = 50.0  # first pause before retrying a failed upstream call (doubles)
    log_dir: str | None = None  # request log (run directories); None: no log
    log_questions: bool = True  # write question text into the log (off for privacy)
    shadow_share: float = 0.0  # share of confident router answers also sent to the teacher, for route eval
    drain_s: float = 30.0  # on SIGTERM: how long in-flight requests may take to finish

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str, value: object) -> None:
            if not ok:
                raise ConfigError(f"--{name.replace('_', '-')}: expected {what}, got {value!r}")

        need(1 <= self.port <= 65535 or self.port == 0, "port", "a port in 1..65535 (0: any free port)", self.port)
        need(self.deadline_ms > 0, "deadline_ms", "a positive number of milliseconds", self.deadline_ms)
        need(1 <= self.max_batch <= 1024, "max_batch", "1..1024", self.max_batch)
        need(0 <= self.batch_window_ms <= 1000, "batch_window_ms", "0..1000 ms", self.batch_window_ms)
        need(1 <= self.upstream_concurrency <= 1024, "upstream_concurrency", "1..1024", self.upstream_concurrency)
        need(1 <= self.max_inflight <= 100_000, "max_inflight", "1..100000", self.max_inflight)
        need(1_000 <= self.max_body_bytes <= 100_000_000, "max_body_bytes", "1000..100000000", self.max_body_bytes)
        need(1 <= self.max_questions <= 10_000, "max_questions", "1..10000", self.max_questions)
        need(0 <= self.retry_backoff_ms <= 10_000, "retry_backoff_ms", "0..10000 ms", self.retry_backoff_ms)
        need(0.0 <= self.shadow_share <= 1.0, "shadow_share", "a share in [0, 1]", self.shadow_share)
        need(self.drain_s >= 0, "drain_s", "a number of seconds >= 0", self.drain_s)
        if self.api_key_env is not None:
            need(bool(self.api_key_env) and self.api_key_env.replace("_", "").isalnum(), "api_key_env",
                 "an environment variable name", self.api_key_env)
