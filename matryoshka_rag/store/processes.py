"""Several processes on one embedded store: one writer at a time, any number of readers that never serve a
stale view.

Chroma's embedded client keeps each collection's search index in the memory of the process that opened it
and writes it back whole, so two writing processes erase each other's records from search, and a process
that opened the store before another wrote never finds those records. The contract, as embedded databases
give it (RocksDB's ``LOCK`` file, SQLite's readers beside one writer):

- a writer holds an exclusive OS lock (``flock``) on ``<database>/matryoshka_rag/WRITER.lock`` for as long
  as a store of that database is open for writing in its process; the kernel releases it when the process
  ends, however it ends. A second writing process gets `StoreLockedError` naming the holder.
- every write bumps a change counter (`ChangeCounter`); a reader compares it before each read and reopens
  its view when it moved. Dropping the store bumps it too (and leaves it, with the lock files: a reader that
  knew a later count could otherwise miss a new store of the same name), so a reader finds the store gone.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import threading
import weakref
from pathlib import Path

from chromadb.api import ClientAPI

from ..atomic import atomic_write_text
from ..errors import InputError
from .chroma_client import database_folder, persist_directory
from .write_errors import file_writes

__all__ = [
    "ChangeCounter",
    "StoreAccess",
    "StoreDroppedError",
    "StoreLockedError",
    "WriterLock",
    "lock_path",
    "store_access",
]

LOCK_NAME = "WRITER.lock"


class StoreLockedError(InputError):
    """Another process holds the store's database open for writing."""


class StoreDroppedError(InputError):
    """The store was dropped (`MatryoshkaStore.drop`) since it was opened: nothing of it is left to use."""


def lock_path(folder: Path) -> Path:
    """The writer lock of the database whose store files live in `folder` (``<database>/matryoshka_rag``)."""
    return folder / LOCK_NAME


class WriterLock:
    """The process's exclusive lock on a database's writer lock file, shared by every store of that database
    opened for writing in this process (reference-counted: `acquire` / `release`)."""

    _held: dict[Path, tuple[int, int]] = {}  # lock file -> (descriptor, stores holding it)
    _guard = threading.Lock()

    @classmethod
    def acquire(cls, folder: Path) -> Path:
        """Take (or share, within this process) the writer lock of `folder`; returns the lock file.

        Raises `StoreLockedError` naming the process that holds it when another process does.
        """
        path = lock_path(folder).resolve()
        with cls._guard:
            if path in cls._held:
                descriptor, holders = cls._held[path]
                cls._held[path] = (descriptor, holders + 1)
                return path
            with file_writes(path, "open the writer lock"):
                folder.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                holder = f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)[:200]})"
                with file_writes(path, "write the writer lock"):
                    os.ftruncate(descriptor, 0)
                    os.pwrite(descriptor, holder.encode("utf-8", "replace") + b"\n", 0)
            except BlockingIOError:
                holder = os.pread(descriptor, 512, 0).decode("utf-8", "replace").strip() or "another process"
                os.close(descriptor)
                raise StoreLockedError(
                    f"the database at {folder.parent} is open for writing by {holder}: one process writes at "
                    "a time (open it with read_only=True to read beside it; several writing processes need "
                    "the server layout, `chroma run`)"
                ) from None
            except BaseException:
                os.close(descriptor)
                raise
            cls._held[path] = (descriptor, 1)
            return path

    @classmethod
    def release(cls, path: Path) -> None:
        """Give back one store's share of the lock; the last one unlocks the file."""
        with cls._guard:
            if path not in cls._held:
                return
            descriptor, holders = cls._held[path]
            if holders > 1:
                cls._held[path] = (descriptor, holders - 1)
                return
            del cls._held[path]
            os.close(descriptor)  # closing the only descriptor releases the flock

    @classmethod
    def held(cls, folder: Path) -> bool:
        """Whether this process holds the writer lock of `folder`."""
        with cls._guard:
            return lock_path(folder).resolve() in cls._held


class ChangeCounter:
    """A store's change counter, ``<folder>/<name>.changes``: the writer bumps it after each acknowledged
    write (upsert batch, delete, compaction); readers compare it with the value they opened at."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path = folder / f"{name}.changes"

    def read(self) -> int:
        """The current count (0 for a store never written since counting began)."""
        try:
            return int(self.path.read_text(encoding="utf-8").strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError as error:
            raise InputError(f"the change counter {self.path} is corrupt: {error}") from error

    def bump(self) -> int:
        """Add one (atomically, durably); returns the new count. Only the writer calls it."""
        count = self.read() + 1
        with file_writes(self.path, "write the change counter"):
            atomic_write_text(self.path, f"{count}\n")
        return count


class StoreAccess:
    """How this process uses one embedded store: as the database's one writer (holding its `WriterLock`,
    bumping the store's `ChangeCounter` after each write), or as a reader (`read_only`) that is told when the
    writer changed the store since it last looked.

    Args:
        database: the Chroma database folder (the `PersistentClient`'s path); None for a server or an
            in-memory client, where Chroma serves several processes itself (then only `read_only` applies).
        name: the store's name.
        read_only: a reader; else the writer (`StoreLockedError` when another process writes).
    """

    def __init__(self, database: Path | None, name: str, read_only: bool) -> None:
        self.database, self.name, self.read_only = database, name, read_only
        self.dropped = False  # set by the store object that dropped the store, until it resets it
        folder = database / "matryoshka_rag" if database is not None else None
        self.counter = ChangeCounter(folder, name) if folder is not None else None
        lock = None if read_only or folder is None else WriterLock.acquire(folder)
        self._release = weakref.finalize(self, WriterLock.release, lock) if lock else None
        self.seen = self.counter.read() if self.counter is not None else 0

    def check_open(self, action: str) -> None:
        """`StoreDroppedError` naming `action` once this object dropped the store."""
        if self.dropped:
            raise StoreDroppedError(
                f"cannot {action}: store {self.name!r} was dropped (drop()); reset() (LangChain: "
                "reset_collection()) makes it again, empty"
            )

    def check_writable(self, action: str) -> None:
        """`InputError` naming `action` for a reader, or a dropped store."""
        self.check_open(action)
        if self.read_only:
            raise InputError(
                f"cannot {action}: the store at {self.database} was opened with read_only=True (open it "
                "without read_only to write; one process writes at a time)"
            )

    def wrote(self) -> None:
        """The writer acknowledged a write: tell the readers."""
        if self.counter is not None:
            self.seen = self.counter.bump()

    def changed(self) -> int | None:
        """Readers: the writer's change count when it changed the store since this process last looked (the
        reader sets `seen` to it once it has reopened its view), else None."""
        self.check_open("read")
        if not self.read_only or self.counter is None:
            return None
        now = self.counter.read()
        return now if now != self.seen else None

    def close(self) -> None:
        """Give back the writer lock (also done when this object is collected, and by the kernel at exit)."""
        if self._release is not None:
            self._release()


def store_access(
    name: str, read_only: bool, path: str | os.PathLike | None, client: ClientAPI | None
) -> StoreAccess:
    """This process's `StoreAccess` to the store `name` at `path` (taken before connecting, so that of two
    processes creating a store one creates it and the other is refused) or through `client`."""
    if path is not None:
        return StoreAccess(database_folder(path).resolve(), name, read_only)
    database = persist_directory(client) if client is not None else None
    if read_only and database is not None:
        raise InputError(
            "read_only=True reopens the store's view when another process writes: give path=, not client="
        )
    return StoreAccess(database, name, read_only)
