"""Connecting to Chroma (embedded folder or `chroma run` server) and turning its errors into ours."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import chromadb
import httpx
from chromadb.api import ClientAPI
from chromadb.api.client import Client
from chromadb.errors import InternalError, InvalidArgumentError, NotFoundError

from ..errors import InputError
from .write_errors import chroma_write_error

__all__ = [
    "ChromaUnavailableError",
    "chroma_errors",
    "client_for",
    "database_folder",
    "in_memory",
    "reconnect",
    "connect",
    "location",
    "persist_directory",
    "served",
]


class ChromaUnavailableError(InputError):
    """The Chroma server (or database folder) named in the message cannot be reached."""

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


def served(client: ClientAPI) -> bool:
    """Whether `client` talks to a Chroma server (an HTTP client)."""
    return bool(client.get_settings().chroma_server_host)


def location(client: ClientAPI) -> str:
    """The URL of an HTTP client's server, or the folder of a persistent client."""
    settings = client.get_settings()
    if served(client):
        scheme = "https" if settings.chroma_server_ssl_enabled else "http"
        return f"{scheme}://{settings.chroma_server_host}:{settings.chroma_server_http_port}"
    return str(settings.persist_directory) if settings.is_persistent else "in-memory Chroma"


@contextmanager
def chroma_errors(location: str, action: str) -> Iterator[None]:
    """Turn Chroma's connection and validation errors into ours, naming `location` and `action`; a write that
    its disk refused (no space, read-only) into `StoreWriteError`; a collection deleted since it was opened
    (the store dropped through another object) into `InputError`."""
    try:
        yield
    except InputError:
        raise
    except NotFoundError as error:
        raise InputError(
            f"Chroma at {location} no longer holds the collection while {action} (the store was dropped or "
            f"reset through another object): open the store again ({error})"
        ) from error
    except httpx.TransportError as error:
        raise ChromaUnavailableError(
            f"cannot reach the Chroma server at {location} while {action}: {error}", location
        ) from error
    except (InvalidArgumentError, ValueError) as error:
        if "Could not connect" in str(error):
            raise ChromaUnavailableError(
                f"cannot reach the Chroma server at {location} while {action}: is it running?", location
            ) from error
        raise InputError(f"Chroma at {location} rejected {action}: {error}") from error
    except (InternalError, OSError) as error:
        refused = chroma_write_error(error, location, action)
        if refused is None:
            raise
        raise refused from error


def connect(path: str | os.PathLike | None = None, host: str | None = None, port: int = 8000) -> ClientAPI:
    """`chromadb.PersistentClient(path)`, or `chromadb.HttpClient(host, port)` when `host` is given.

    Raises `InputError` saying which is wrong when both or neither of `path` and `host` is given,
    `ChromaUnavailableError` naming the URL when the server does not answer.
    """
    if path is not None and host is not None:
        raise InputError("give either a database folder (path) or a server (host and port), not both")
    if host is not None:
        url = f"http://{host}:{port}"
        with chroma_errors(url, "connecting"):
            return chromadb.HttpClient(host=host, port=int(port))
    if path is None:
        raise InputError(
            "no Chroma database given: give a database folder (path) or a server (host and port)"
        )
    folder = database_folder(path)
    with chroma_errors(str(folder), "opening the database"):
        return chromadb.PersistentClient(path=str(folder))


def reconnect(client: ClientAPI, path: str | os.PathLike | None) -> ClientAPI:
    """A fresh view of the embedded database at `path`: `client` closed (Chroma then drops the indexes it
    held in memory, once no other client of the process holds them) and a new one connected."""
    if isinstance(client, Client):
        client.close()
    return connect(path=path)


def database_folder(path: str | os.PathLike) -> Path:
    """`path` as an embedded database folder (`~` expanded); `InputError` when it is a file."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"the Chroma database path {folder} is a file, not a folder")
    return folder


def client_for(
    client: ClientAPI | None, path: str | os.PathLike | None, host: str | None, port: int
) -> ClientAPI:
    """`client`, else `connect(path, host, port)`; InputError when a client and a path or host are given."""
    if client is None:
        return connect(path=path, host=host, port=port)
    if path is not None or host is not None:
        raise InputError("give a client, or a path, or a host, not several")
    return client


def in_memory(client: ClientAPI) -> bool:
    """Whether `client` holds its database in this process's memory (`chromadb.EphemeralClient`)."""
    return not served(client) and not client.get_settings().is_persistent


def persist_directory(client: ClientAPI) -> Path | None:
    """The database folder of an embedded persistent client; None for a server or in-memory client."""
    settings = client.get_settings()
    if settings.chroma_server_host or not settings.is_persistent:
        return None
    return Path(settings.persist_directory)
