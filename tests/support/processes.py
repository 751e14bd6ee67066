"""Kill a command with SIGKILL at a chosen moment, as ``kill -9`` or a power cut would: the crash tests' one tool."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable, Mapping, Sequence


def kill_when(args: Sequence[str], ready: Callable[[], bool], env: Mapping[str, str] | None = None,
              timeout: float = 300, poll: float = 0.02) -> None:
    """Start ``args`` in a session of its own and SIGKILL all of it as soon as ``ready()`` holds.

    Fails the test when the command ends first (it could not be interrupted where asked) or
    ``ready()`` does not come within ``timeout`` seconds.
    """
    proc = subprocess.Popen(list(args), env=dict(env) if env is not None else None, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the command ended before it could be killed"
            assert time.time() < deadline, f"not ready after {timeout} s"
            time.sleep(poll)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
