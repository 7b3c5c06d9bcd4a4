"""`python -m tests.faults.hooked_worker ARGS…` runs `salon ARGS…` with faults injected, for tests only.

The faults are chosen by environment variables and patched into the engine before the command starts, so the
product itself carries no test hooks:
- SALON_TEST_CRASH_PROMPT=word and SALON_TEST_CRASH_STEP=n: the process SIGKILLs itself at denoising step n of
  any job whose prompt contains the word (a job that always crashes the worker at the same point).
- SALON_TEST_SLOW_LOAD_S=s: the first checkpoint load of the process sleeps s seconds first, in the GPU thread,
  where nothing can interrupt it (a large model loading).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _crash_at_step(word: str, step: int) -> None:
    from engine.runner import Engine

    original = Engine.txt2img_many

    def txt2img_many(self, requests, controls):
        for request, control in zip(requests, controls, strict=True):
            if word in request.prompt:
                control.on_step = _killing(control.on_step, step)
        return original(self, requests, controls)

    Engine.txt2img_many = txt2img_many


def _killing(on_step, step: int):
    def killing(event) -> None:
        if on_step is not None:
            on_step(event)  # the worker's own callback first: its point file says this step
        if event.step >= step:
            os.kill(os.getpid(), signal.SIGKILL)

    return killing


def _slow_first_load(seconds: float) -> None:
    from engine.runner import Engine

    original = Engine.load

    def load(self, name):
        if self._model is None:
            time.sleep(seconds)
        return original(self, name)

    Engine.load = load


def main() -> int:
    word = os.environ.get("SALON_TEST_CRASH_PROMPT")
    if word:
        _crash_at_step(word, int(os.environ.get("SALON_TEST_CRASH_STEP", "1")))
    slow = os.environ.get("SALON_TEST_SLOW_LOAD_S")
    if slow:
        _slow_first_load(float(slow))
    from cli.main import main as salon

    return salon(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
