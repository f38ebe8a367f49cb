"""Allow one deploy, rollback or scale per app at a time, and name the holder to the others.

The lock is a file, ``<root>/.orchestrator/lock-<app>.json``, holding who has it (host, pid,
release, command, started_at). The holder also keeps an exclusive ``flock`` on that file for as
long as it runs. The kernel drops a ``flock`` when its process dies, even by ``kill -9``, so:

- if the ``flock`` cannot be taken, a live process holds the lock: `DeployLocked` names it at
  once (no waiting);
- if it can be taken but the file still names a holder, that holder ended without releasing.
  When it was on this host and its pid is gone (or is now a different process), the lock is
  stale and is taken over, with a note saying so. A holder on another host cannot be checked
  from here, so that lock is never broken automatically: the error says which file to remove.

A lock is never taken from a live process: a live holder always has its ``flock``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from orchestrator.errors import DeployError, DeployLocked
from orchestrator.execute.events import utcnow
from orchestrator.execute.journal import JOURNAL_DIR, iso

__all__ = ["DeployLock", "LockHolder", "lock_path"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def lock_path(root: Path, app: str) -> Path:
    """Return the lock file of ``app`` under ``root``."""
    return root / JOURNAL_DIR / f"lock-{_UNSAFE.sub('_', app)}.json"


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds an app's deploy lock.

    Attributes:
        host: the holder's host name.
        pid: its process id.
        release: the release it is rolling out (or ``""``).
        command: ``deploy``, ``rollback``, ``scale``...
        started_at: ISO timestamp of when it took the lock.
        process_started: the process's start time (epoch seconds), to tell a reused pid apart.
    """

    host: str
    pid: int
    release: str
    command: str
    started_at: str
    process_started: float = 0.0

    def describe(self) -> str:
        """Return one line naming the holder."""
        what = f"{self.command} of {self.release}" if self.release else self.command
        return f"{what} by pid {self.pid} on {self.host} since {self.started_at}"

    @classmethod
    def from_json(cls, data: Any) -> LockHolder | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                host=str(data["host"]),
                pid=int(data["pid"]),
                release=str(data.get("release", "")),
                command=str(data.get("command", "deploy")),
                started_at=str(data.get("started_at", "")),
                process_started=float(data.get("process_started", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _process_started(pid: int) -> float:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return 0.0


def _alive(holder: LockHolder) -> bool:
    """Tell whether the holder's process still runs (on this host)."""
    if not psutil.pid_exists(holder.pid):
        return False
    if holder.process_started:
        # The pid exists, but is it still the same process? A reused pid starts later.
        started = _process_started(holder.pid)
        return started != 0.0 and abs(started - holder.process_started) < 1.0
    return True


class DeployLock:
    """The deploy lock of one app in one working directory.

    Use as a context manager, or call :meth:`acquire` and :meth:`release`::

        with DeployLock(root, app, release="v2-3f9a2c1b", command="deploy") as lock:
            ...

    Attributes:
        path: the lock file.
        stale: the holder of a stale lock that :meth:`acquire` took over, else ``None``.
    """

    def __init__(self, root: Path, app: str, *, release: str = "", command: str = "deploy") -> None:
        self.path = lock_path(root, app)
        self.app = app
        self.release_id = release
        self.command = command
        self.stale: LockHolder | None = None
        self._fd: int | None = None

    def acquire(self) -> LockHolder:
        """Take the lock or raise at once.

        Raises:
            DeployLocked: a live process (or a process on another host) holds it; the message
                names it.
            DeployError: the lock file cannot be created.
        """
        if self._fd is not None:
            raise DeployError(f"{self.path}: already held by this process")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DeployError(f"{self.path}: cannot create the lock file: {exc}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                raise self._locked(holder) from None
            previous = _read(fd)
            if previous is not None:
                if previous.host != socket.gethostname():
                    raise self._locked(previous, remote=True)
                if _alive(previous) and previous.pid != os.getpid():
                    # We hold the flock, so this process is not the holder any more; only a
                    # holder that closed its file without clearing it gets here. Be safe.
                    raise self._locked(previous)
                self.stale = previous
            holder = LockHolder(
                host=socket.gethostname(),
                pid=os.getpid(),
                release=self.release_id,
                command=self.command,
                started_at=iso(utcnow()),
                process_started=_process_started(os.getpid()),
            )
            _write(fd, holder)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return holder

    def _locked(self, holder: LockHolder | None, *, remote: bool = False) -> DeployLocked:
        if holder is None:
            return DeployLocked(f"app {self.app!r} is locked by another deploy ({self.path})")
        hint = f"; if it is dead, remove {self.path}" if remote else ""
        return DeployLocked(
            f"app {self.app!r} is locked: {holder.describe()}{hint}", holder=asdict(holder)
        )

    def release(self) -> None:
        """Clear and unlock the lock file (a no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Clear before unlocking, so nobody ever sees our holder on an unlocked file.
            os.ftruncate(fd, 0)
            os.fsync(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        """Tell whether this object holds the lock."""
        return self._fd is not None

    def holder(self) -> LockHolder | None:
        """Return who holds the lock now (read from the file), or ``None``."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DeployError(f"{self.path}: cannot read the lock file: {exc}") from exc
        try:
            return _read(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> DeployLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read(fd: int) -> LockHolder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        return LockHolder.from_json(json.loads(text))
    except json.JSONDecodeError:
        return None


def _write(fd: int, holder: LockHolder) -> None:
    data = (json.dumps(asdict(holder), sort_keys=True) + "\n").encode()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.fsync(fd)
