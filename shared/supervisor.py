"""`tandem run`'s supervisor: one Python process that starts every service's
processes, prints what each prints under its name, and stops them all.

Each process is forked from the supervisor after it has loaded the code they
share (Flask, SQLAlchemy, Kombu, the services' modules: none of what only one
of them uses, such as numpy) and moved it out of the garbage collector's walks:
its pages stay the supervisor's, shared by every process, instead of one copy
each. A forked process names itself (``setproctitle``: ``tandem worker
journal relay``, gunicorn's ``gunicorn: master [tandem-journal]``) and has a
session of its own, so the terminal's Ctrl-C reaches the supervisor alone,
which stops the others gracefully (SIGTERM).

As before: when any process ends, the supervisor stops the others, and exits
with the first one's code; Ctrl-C or SIGTERM stops them all, and the exit code
is 0 when every one stopped cleanly in time. Nothing is restarted.
(docs/decisions/0010-one-supervisor-forking-every-process.md)
"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

STOP_WAIT = (
    10.0  # seconds a process has to stop on SIGTERM before SIGKILL (gunicorn's graceful_timeout)
)


@dataclass
class Child:
    name: str  # as printed: "journal.web", "milestones.consumer"
    title: str  # its process title: what ps and /proc/PID/cmdline show
    target: Callable[
        [], object
    ]  # run in the forked process; what it returns or exits with is its code
    env: dict[str, str]
    pid: int = 0
    returncode: int | None = None
    _fd: int = -1
    _partial: bytes = field(default=b"", repr=False)


def preload(modules: list[str]) -> None:
    """Import what every process will use, then freeze it (``gc.freeze``): the
    forked processes share these pages for as long as they run."""
    import importlib

    for name in modules:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _stopped_while_starting(*_) -> None:
    raise SystemExit(0)


def _stop_with_the_supervisor(supervisor: int) -> None:
    """SIGTERM to this process if the supervisor dies (killed, it could not stop it): Linux's
    PR_SET_PDEATHSIG; elsewhere nothing."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before that: nobody would send the signal
        os.kill(os.getpid(), signal.SIGTERM)


def _in_child(child: Child, write_fd: int, others: list[int], supervisor: int) -> None:
    """The forked process: its own session, its output into the pipe, its environment and title."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Until the process puts its own handlers: stopped while starting, it exits cleanly.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stopped_while_starting)
        _stop_with_the_supervisor(supervisor)
        for fd in others:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
        os.environ.clear()
        os.environ.update(child.env)
        if "prometheus_client" in sys.modules:  # values in the process's own multiprocess directory
            from prometheus_client import values

            values.ValueClass = values.get_value_class()
        from setproctitle import setproctitle

        setproctitle(child.title)
        code = _exit_code(child.target())
    except SystemExit as e:
        code = _exit_code(e.code)
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


class Supervisor:
    def __init__(self, children: list[Child], out=None):
        self.children = children
        self.out = out or sys.stdout
        self.width = max([len(c.name) for c in children] + [len("system")])
        self.selector = selectors.DefaultSelector()
        self.stopping_since: float | None = None
        self.signalled = False
        self.asked_to_stop = False  # set by the signal handler; the loop acts on it
        self.killed = False
        self.returncode: int | None = None

    def _print(self, name: str, line: str) -> None:
        self.out.write(f"{datetime.now():%H:%M:%S} {name:<{self.width}} | {line}\n")
        self.out.flush()

    def _start(self, child: Child) -> None:
        read_fd, write_fd = os.pipe()
        others = [c._fd for c in self.children if c._fd >= 0] + [read_fd]
        self.out.flush()
        sys.stderr.flush()
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            _in_child(child, write_fd, others, me)
        os.close(write_fd)
        child.pid, child._fd = pid, read_fd
        self.selector.register(read_fd, selectors.EVENT_READ, child)
        self._print("system", f"{child.name} started (pid={pid})")

    def _read(self, child: Child) -> None:
        data = os.read(child._fd, 65536)
        if not data:
            self.selector.unregister(child._fd)
            os.close(child._fd)
            child._fd = -1
            data = b"\n" if child._partial else b""
        *lines, child._partial = (child._partial + data).split(b"\n")
        for line in lines:
            self._print(child.name, line.decode(errors="replace").rstrip("\r"))

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for child in self.children:
                if child.pid == pid:
                    child.returncode = os.waitstatus_to_exitcode(status)
                    self._print("system", f"{child.name} stopped (rc={child.returncode})")
                    if self.stopping_since is None:
                        self.returncode = child.returncode
                        self.stop()

    def _on_signal(self, *_) -> None:
        self.asked_to_stop = True  # only a flag: printing here could re-enter a write under way

    def stop(self, signalled: bool = False) -> None:
        if self.stopping_since is not None:
            return
        self.signalled = signalled
        self.stopping_since = time.monotonic()
        for child in self.children:
            if child.returncode is None and child.pid:
                self._print("system", f"sending SIGTERM to {child.name} (pid {child.pid})")
                try:
                    os.kill(child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def _kill_the_late(self) -> None:
        for child in self.children:
            if child.returncode is None:
                self._print("system", f"sending SIGKILL to {child.name} (pid {child.pid})")
                self.killed = True
                try:
                    os.kill(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def run(self) -> int:
        """Start every child, relay their output until all have stopped; the exit code."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for child in self.children:
            if not self.asked_to_stop:
                self._start(child)
        killed_at = None
        while True:
            if self.asked_to_stop:
                self.stop(signalled=True)
            for key, _ in self.selector.select(timeout=0.1):
                self._read(key.data)
            self._reap()
            if self.stopping_since is not None:
                if all(c.returncode is not None or not c.pid for c in self.children):
                    if not self.selector.get_map() or (
                        time.monotonic() - (killed_at or self.stopping_since) > STOP_WAIT + 2
                    ):
                        break  # every output read to its end (a grandchild may hold a pipe: not forever)
                elif killed_at is None and time.monotonic() - self.stopping_since > STOP_WAIT:
                    self._kill_the_late()
                    killed_at = time.monotonic()
        if self.signalled:  # asked to stop: did every process stop cleanly?
            return 0 if all(c.returncode == 0 for c in self.children if c.pid) else 1
        if self.returncode is not None and self.returncode < 0:
            return 128 - self.returncode  # ended by a signal: as a shell says it (SIGKILL: 137)
        return self.returncode or (1 if self.killed else 0)
