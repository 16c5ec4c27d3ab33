"""Child processes of the embedded stack: spawn with a log file, signal, stop, read the log.

Each child leads its own process group (a new session), for two reasons: Ctrl-C in the
terminal reaches only `wok`, which then stops the children in order, and a signal sent
to the group also reaches anything the child itself started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

TERMINATING_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


class ChildProcess:
    """One named child whose stdout and stderr go to `log_path`; `stale_files` (a pid file,
    say) are removed before each start, as a child killed hard leaves them behind."""

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        stale_files: Sequence[Path] = (),
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.stale_files = tuple(stale_files)
        self._process: subprocess.Popen[bytes] | None = None
        self._swept = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def spawned(self) -> bool:
        return self._process is not None

    @property
    def swept(self) -> bool:
        return self._swept

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, truncate_log: bool) -> None:
        """Spawn; a fresh stack truncates the log, a restart appends so the old run stays."""
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        for stale in self.stale_files:
            stale.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._swept = False
        with open(self.log_path, "wb" if truncate_log else "ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def send(self, signum: int) -> None:
        """Signal the child's whole process group (unless it is gone for good)."""
        if self._process is None or self._swept:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def wait(self, timeout_s: float) -> int | None:
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, *, grace_s: float) -> int | None:
        """SIGTERM, then SIGKILL when the grace period is over; returns the exit code."""
        stop_all([self], grace_s=grace_s)
        return self.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def sweep_group(self) -> None:
        """Kill what the child left behind in its group, once: the leader is already reaped,
        and later the group's number may belong to someone else."""
        if not self._swept:
            self.send(signal.SIGKILL)
            self._swept = True


def stop_all(children: Sequence[ChildProcess], *, grace_s: float) -> None:
    """Stop several children at once: all get SIGTERM, stragglers SIGKILL after `grace_s`."""
    started = [child for child in children if child.spawned and not child.swept]
    for child in started:
        if child.alive:
            child.send(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in started:
        if child.wait(max(0.0, deadline - time.monotonic())) is None:
            child.send(signal.SIGKILL)
            child.wait(10.0)
        child.sweep_group()
