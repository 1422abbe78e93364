"""One progress bar for a training run, in place of transformers' tqdm bar and its printed dicts.

It shows optimizer steps done of all steps, the epoch, the last logged loss, the training tokens
per second since this process started (padding not counted: the Trainer's
`include_num_input_tokens_seen="non_padding"`), and the time left. Only the main process draws
it. Messages printed while it runs (the per-epoch evaluation's) appear above it.
"""
from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback


class TrainProgress(TrainerCallback):
    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._t0 = 0.0
        self._tokens0 = 0
        self.loss: float | None = None
        self.tokens_per_s: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                             TextColumn("eta"), TimeRemainingColumn(), transient=False)
        self._task = self._bar.add_task("train", total=state.max_steps or None, completed=state.global_step,
                                        info=self._info(state))
        self._t0, self._tokens0 = time.perf_counter(), int(state.num_input_tokens_seen or 0)
        self._bar.start()

    def _info(self, state) -> str:
        parts = [f"epoch {state.epoch or 0:.2f}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:,.0f} tok/s")
        return "  ".join(parts)

    def on_step_end(self, args, state, control, **kwargs):
        if self._bar is None:
            return
        elapsed = time.perf_counter() - self._t0
        seen = int(state.num_input_tokens_seen or 0) - self._tokens0
        if elapsed > 0 and seen > 0:
            self.tokens_per_s = seen / elapsed
        self._bar.update(self._task, completed=state.global_step, info=self._info(state))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])
        if self._bar is not None:
            self._bar.update(self._task, info=self._info(state))

    def on_train_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.update(self._task, completed=state.global_step, info=self._info(state))
            self._bar.stop()
            self._bar = None
