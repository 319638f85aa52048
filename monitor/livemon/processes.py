"""`livemon` commands run as child processes (the demo, the soak and bench runs, the tests).

Each child runs in its own session, so a Ctrl-C in the terminal reaches only the parent, which
stops its children in order; stopping a child stops its whole process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import click

from livemon.broker import free_port


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within: a SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so that the caller's
    `finally` stops its children and closes its files (by default a SIGTERM ends Python at once).
    Off the main thread (which alone gets signals) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ProcessFailed(click.ClickException):
    """A child exited, or did not become healthy, when it should be running (a command that
    started it reports this as its own error)."""


class LivemonProcess:
    """`livemon ARGS...` in the background, its output appended to `log_path`."""

    def __init__(self, args: list[str], log_path: str, env: dict | None = None, nice: int = 0):
        """`nice`: a lower CPU priority (`nice(1)`), for a load generator that shares the machine
        with what it loads: it takes the CPU the others leave (all its threads, as started so)."""
        self.args = args
        self.log_path = log_path
        command = [sys.executable, "-m", "livemon", *args]
        if nice:
            command = ["nice", "-n", str(nice), *command]  # exec'd: the same process
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, env=env)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)

    def _signal_group(self, sig) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self._signal_group(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def log_tail(self, size: int = 5000) -> str:
        with open(self.log_path, errors="replace") as log:
            return log.read()[-size:]


class WorkerProcess(LivemonProcess):
    """`livemon worker --broker BOOTSTRAP --web-port PORT ARGS...` on a free loopback port
    (`command="web"`: the control room on its own, `livemon web`)."""

    def __init__(self, bootstrap: str, args: list[str], log_path: str, port: int | None = None,
                 env: dict | None = None, command: str = "worker"):
        self.bootstrap = bootstrap
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = command
        super().__init__([command, "--broker", bootstrap, "--web-port", str(self.port), *args], log_path, env)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def wait_healthy(self, timeout: float = 90.0) -> "WorkerProcess":
        """Return once /healthz answers 200; ProcessFailed if the worker exits or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProcessFailed(f"the {self.command} exited with {self.process.returncode}; see {self.log_path}:\n"
                                    f"{self.log_tail(2000)}")
            try:
                if self.get("/healthz", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise ProcessFailed(f"the {self.command} was not healthy within {timeout:.0f} s; see {self.log_path}")
