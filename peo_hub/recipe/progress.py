"""What a person watching a long ``recipe run`` sees, and where everything else goes.

Why: a real-model run takes tens of minutes and its libraries all talk at once (TRL's
per-step dicts, transformers' weight-loading bars, datasets' map bars, PEFT's warnings), so
the one thing a person wants to know (which phase, which aspect, how far, how long still) is
lost in the noise. During a run, this module shows one bar per task with the same shape::

    [2/4] train harmless  12/40 steps [03:10<09:31]

and sends the libraries' own logs, warnings and per-step metrics to the bundle's
``logs/run.log`` (the bundle format's :data:`~peo_hub.bundle.manifest.RUN_LOG`), where they can be
read after the fact. peo-hub's own warnings still reach the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from tqdm.auto import tqdm

BAR_FORMAT = "{desc}  {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}]"
# Loggers of the libraries a run drives; transformers and datasets do not propagate to the root.
LIBRARY_LOGGERS = ("transformers", "datasets", "trl", "peft", "accelerate", "huggingface_hub", "torch")
STEP_LOGGER = "peo_hub.steps"  # per-step training metrics: the log file only


class _TqdmHandler(logging.Handler):
    """peo-hub's warnings on the terminal, written above the bars instead of through them."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def task(desc: str, total: int | None, unit: str) -> tqdm:
    """One bar of the run's progress view (always the same shape, so a person reads them alike)."""
    return tqdm(total=total, desc=desc, unit=unit, bar_format=BAR_FORMAT, dynamic_ncols=True, leave=True)


def _library_bars() -> list[tuple[Callable[[], bool], Callable[[], None], Callable[[], None]]]:
    """(is it on, switch on, switch off) for each library's own progress bars."""
    import datasets
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as hf_logging

    return [(datasets.is_progress_bar_enabled, datasets.enable_progress_bars, datasets.disable_progress_bars),
            (lambda: not hub_utils.are_progress_bars_disabled(), hub_utils.enable_progress_bars,
             hub_utils.disable_progress_bars),
            (hf_logging.is_progress_bar_enabled, hf_logging.enable_progress_bar, hf_logging.disable_progress_bar)]


@contextlib.contextmanager
def library_output_to(log_path: Path) -> Iterator[Path]:
    """Route the libraries' logs, warnings and bars to ``log_path`` for the duration of a run.

    Everything is put back on exit (handlers, levels, bars, warning capture), so a library
    caller's own logging is untouched after ``run_recipe`` returns or fails.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    terminal = _TqdmHandler(logging.WARNING)
    terminal.setFormatter(logging.Formatter("%(message)s"))

    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in LIBRARY_LOGGERS}
    ours = logging.getLogger("peo_hub")
    saved_ours = (ours.handlers[:], ours.level, ours.propagate)
    bars_on = [(on, off) for is_on, on, off in _library_bars() if is_on()]
    for _, off in bars_on:
        off()
    try:
        root.handlers = [handler]
        root.setLevel(logging.INFO)
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers = [handler]  # replaces transformers' and datasets' own stderr handlers
            logger.propagate = False
            logger.setLevel(logging.INFO)
        ours.handlers = [terminal]  # the user's warnings on screen; propagated to the file as well
        ours.propagate = True
        ours.setLevel(logging.INFO)
        logging.getLogger(STEP_LOGGER).propagate = True
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            logging.captureWarnings(True)
            try:
                yield log_path
            finally:
                logging.captureWarnings(False)
    finally:
        root.handlers, level = saved_root
        root.setLevel(level)
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        ours.handlers, level, ours.propagate = saved_ours
        ours.setLevel(level)
        for on, _ in bars_on:
            on()
        handler.close()


def training_callback(desc: str) -> Any:
    """A ``TrainerCallback`` that drives one task bar by optimizer steps and logs metrics to the file."""
    from transformers import TrainerCallback

    steps_log = logging.getLogger(STEP_LOGGER)

    class _Progress(TrainerCallback):
        bar: tqdm | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar = task(desc, state.max_steps, "steps")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None and state.is_world_process_zero:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if state.is_world_process_zero and logs:
                steps_log.info("%s step %d/%d: %s", desc, state.global_step, state.max_steps, dict(logs))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    return _Progress()
