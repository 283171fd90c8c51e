"""One writer per run folder: a lock file `.lock` in the folder naming its owner (pid, host, start time).

A second invocation on a folder that is being written stops at once with an error naming the owner; it
does not wait. Two identical commands running together is a mistake that waiting would hide, and once
the first one ends, rerunning the second skips what the first finished and resumes the rest.

The lock belongs to the launch: process 0 of a sharded run (`runner.shards`) takes it for every rank.

Mechanism: an exclusive `flock` on the lock file, which the kernel releases when its process dies (even
by kill -9), plus the owner written into the file, for the message and for filesystems where `flock`
does not reach other hosts. A lock file left behind by a process that is gone (same host, pid not
running) is taken over with a notice; the owner on another host cannot be checked, so its lock is
never assumed stale (the message says how to remove it).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional

from common.errors import ToolkitError
from runner.provenance import now_iso

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class FolderLock:
    """The lock of one run folder (created with the folder when missing)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / LOCK_FILE
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = self._lock_file()
        try:
            owner = _read_owner(fd)
            if owner and not _is_this_process(owner):
                self._check_stale(owner)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso()})
                      .encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _lock_file(self) -> int:
        """An open descriptor of the lock file, flock-ed; an error naming the owner if another process has it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise ToolkitError(self._busy(owner)) from None
            # The owner may have released (unlinked) the file between our open and flock: then lock the
            # file now at that path, or two processes would each hold a lock on a different file.
            if _same_file(fd, self.path):
                return fd
            os.close(fd)

    def _check_stale(self, owner: dict) -> None:
        """Take over the lock of a process that is gone (with a notice); refuse one that may be running."""
        if owner.get("host") != socket.gethostname():
            raise ToolkitError(self._busy(owner) + f"; if that run is no longer active, delete {self.path}")
        if _pid_running(owner.get("pid")):
            raise ToolkitError(self._busy(owner) + f"; if no run is active in this folder (a reused pid), "
                                                   f"delete {self.path}")
        logger.warning("%s: taking over the lock left by pid %s (no longer running, since %s)", self.folder,
                       owner.get("pid"), owner.get("since"))

    def _busy(self, owner: Optional[dict]) -> str:
        who = (f"pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('since')}" if owner
               else "another process")
        return (f"{self.folder} is being written by another run ({who}); wait for it to finish and rerun "
                f"(finished configurations are then skipped), or stop it")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # before closing: nobody may lock the old file after we leave
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


@contextmanager
def locked(folders: Iterable[Path], enabled: bool = True) -> Iterator[None]:
    """Hold the lock of every folder for the block (nothing when not `enabled`: ranks other than 0)."""
    held: list[FolderLock] = []
    try:
        if enabled:
            for folder in folders:
                lock = FolderLock(folder)
                lock.acquire()
                held.append(lock)
        yield
    finally:
        for lock in reversed(held):
            lock.release()


def _read_owner(fd: int) -> Optional[dict]:
    data = os.pread(fd, 4096, 0)
    try:
        owner = json.loads(data) if data.strip() else None
    except ValueError:  # written by hand or torn: nobody we can name
        return None
    return owner if isinstance(owner, dict) else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _is_this_process(owner: dict) -> bool:
    return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()


def _pid_running(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True
