"""BEIR datasets by name: the download path against a local HTTP server serving a zip built here from a tiny
BEIR-layout slice (no network), the user cache, the offline error, and refused archives."""

from __future__ import annotations

import http.server
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from matryoshka_rag.cli.app import main
from matryoshka_rag.data.beir import load_beir
from matryoshka_rag.data.download import LOCAL_BEIR, dataset_folder, download_dataset
from matryoshka_rag.errors import InputError

NAME = "arguana"  # a public BEIR name with no copy in ../shared/beir
assert not (LOCAL_BEIR / NAME).exists()

CORPUS = [{"_id": f"d{i}", "title": f"Title {i}", "text": f"body {i}"} for i in range(4)]
QUERIES = [{"_id": f"q{i}", "text": f"question {i}"} for i in range(2)]
QRELS = "query-id\tcorpus-id\tscore\r\nq0\td1\t1\r\nq1\td3\t2\r\n"


def slice_zip(prefix: str = f"{NAME}/", extra: dict[str, str] | None = None) -> bytes:
    """A BEIR-layout zip: `<prefix>corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv` (+ `extra` members)."""
    members = {
        f"{prefix}corpus.jsonl": "".join(json.dumps(d) + "\n" for d in CORPUS),
        f"{prefix}queries.jsonl": "".join(json.dumps(q) + "\n" for q in QUERIES),
        f"{prefix}qrels/test.tsv": QRELS,
    } | (extra or {})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zipped:
        for name, text in members.items():
            zipped.writestr(name, text)
    return buffer.getvalue()


class ArchiveServer:
    """A local HTTP server answering `/<file>` from `files` (else 404), counting the requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                body = server.files.get(self.path.lstrip("/"))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/datasets"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user data cache, in a temporary folder."""
    monkeypatch.setenv("MATRYOSHKA_RAG_DATA", str(tmp_path / "data"))
    return tmp_path / "data" / "beir"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ArchiveServer]:
    with ArchiveServer({f"datasets/{NAME}.zip": slice_zip()}) as running:
        monkeypatch.setenv("MATRYOSHKA_RAG_BEIR_URL", running.url)
        yield running


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_name_downloads_into_the_cache_once(cache: Path, server: ArchiveServer) -> None:
    dataset = load_beir(NAME)
    assert dataset.path == cache / NAME
    assert dataset.corpus_ids == ["d0", "d1", "d2", "d3"]
    assert dataset.corpus_texts[1] == "Title 1 body 1"
    assert dataset.qrels("test") == {"q0": {"d1": 1}, "q1": {"d3": 2}}
    assert server.requests == [f"/datasets/{NAME}.zip"]
    assert sorted(p.name for p in cache.iterdir()) == [NAME]  # no partial download or temporary folder left

    again = load_beir(NAME)
    assert again == dataset
    assert len(server.requests) == 1  # the second load is served by the cache


def test_a_flat_archive_is_extracted_as_the_dataset_folder(tmp_path: Path) -> None:
    with ArchiveServer({f"{NAME}.zip": slice_zip(prefix="")}) as running:
        folder = download_dataset(NAME, tmp_path, running.url.removesuffix("/datasets"))
    assert sorted(p.name for p in folder.iterdir()) == ["corpus.jsonl", "qrels", "queries.jsonl"]


def test_a_folder_path_wins_and_a_local_copy_is_used_without_asking_the_server(
    tmp_path: Path, cache: Path, server: ArchiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / NAME).mkdir()
    monkeypatch.chdir(tmp_path)
    assert dataset_folder(NAME) == Path(NAME)  # a folder of that name in the working directory
    beside = tmp_path / "shared" / "beir"  # stands for ../shared/beir beside the repository
    (beside / "scifact").mkdir(parents=True)
    monkeypatch.setattr("matryoshka_rag.data.download.LOCAL_BEIR", beside)
    assert dataset_folder("scifact") == beside / "scifact"
    assert server.requests == []


def test_offline_is_one_line_saying_how_to_use_a_local_copy(
    cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{unused_port()}/datasets"
    monkeypatch.setenv("MATRYOSHKA_RAG_BEIR_URL", url)
    code = main(["eval", "--dataset", NAME, "--out", str(cache.parent / "report")])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1
    assert f"{url}/{NAME}.zip" in error and "--dataset a folder" in error and str(cache / NAME) in error
    assert not any(cache.iterdir())  # the partial download is removed


def test_a_corrupt_zip_is_refused_and_nothing_is_cached(tmp_path: Path) -> None:
    data = bytearray(slice_zip())
    data[data.index(b"Title 2") + 1] ^= 0xFF  # a stored member's byte: its CRC-32 no longer matches
    with ArchiveServer({f"{NAME}.zip": bytes(data), "nfcorpus.zip": b"not a zip at all"}) as running:
        base = running.url.removesuffix("/datasets")
        with pytest.raises(InputError, match="not a readable zip archive.*CRC"):
            download_dataset(NAME, tmp_path / "cache", base)
        with pytest.raises(InputError, match="not a readable zip archive"):
            download_dataset("nfcorpus", tmp_path / "cache", base)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_member_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    archive = slice_zip(extra={f"{NAME}/../../escaped.txt": "outside"})
    with (
        ArchiveServer({f"{NAME}.zip": archive}) as running,
        pytest.raises(InputError, match="escapes the extraction folder"),
    ):
        download_dataset(NAME, tmp_path / "cache", running.url.removesuffix("/datasets"))
    assert list((tmp_path / "cache").iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_an_archive_without_a_corpus_is_refused(tmp_path: Path) -> None:
    with (
        ArchiveServer({f"{NAME}.zip": slice_zip(prefix="elsewhere/")}) as running,
        pytest.raises(InputError, match="does not hold corpus.jsonl, queries.jsonl"),
    ):
        download_dataset(NAME, tmp_path / "cache", running.url.removesuffix("/datasets"))
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_archive_names_the_answer(cache: Path, server: ArchiveServer) -> None:
    with pytest.raises(InputError, match=r"scidocs\.zip answered 404"):
        load_beir("scidocs")


def test_an_unknown_name_lists_the_known_ones_without_asking(cache: Path, server: ArchiveServer) -> None:
    with pytest.raises(InputError, match="'scifcat' is not a BEIR dataset name.*scifact"):
        load_beir("scifcat")
    with pytest.raises(InputError, match="folder not found"):
        load_beir("no/such/folder")
    assert server.requests == []


def test_a_dataset_name_finds_the_shared_folder_beside_the_repository():
    """`--dataset scifact` reads `../shared/beir/scifact` beside the checkout (as `make demo` does) before any
    cache or download."""
    from tests.conftest import SHARED

    assert LOCAL_BEIR == SHARED / "beir"
    if (SHARED / "beir" / "scifact").is_dir():
        assert dataset_folder("scifact") == SHARED / "beir" / "scifact"
