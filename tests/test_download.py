"""`tinyasc download` against a local HTTP server with Zenodo's paths, serving small zip archives."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tinyasc.base.errors import TinyAscError
from tinyasc.cli import main
from tinyasc.data.download import DATASETS, Archive, DatasetSpec, download, spec_for

FOLDER = "TAU-fake-development"
RECORD = "42"


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


AUDIO = _zip({f"{FOLDER}/audio/park-x-{i}-a.wav": bytes([i]) * 5000 for i in range(40)})
META = _zip({f"{FOLDER}/meta.csv": ("filename\tscene_label\n" + "".join(f"audio/park-x-{i}-a.wav\tpark\n"
                                                                        for i in range(40))).encode(),
             f"{FOLDER}/evaluation_setup/fold1_train.csv": b"filename\tscene_label\n"})
FILES = {"fake.audio.1.zip": AUDIO, "fake.meta.zip": META}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Server:
    """Zenodo's paths on 127.0.0.1: /records/ID/files/NAME (with Range) and /api/records/ID."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests, self.listed_md5 = files, [], {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                outer.requests.append((path, self.headers.get("Range")))
                if path == f"/api/records/{RECORD}":
                    listing = [{"key": n, "size": len(d), "checksum": f"md5:{outer.listed_md5.get(n, md5(d))}"}
                               for n, d in outer.files.items()]
                    return self._send(200, json.dumps({"files": listing}).encode())
                name = path.rsplit("/", 1)[-1]
                if not path.startswith(f"/records/{RECORD}/files/") or name not in outer.files:
                    return self._send(404, b"")
                data, start = outer.files[name], 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                self._send(206 if start else 200, data[start:])

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server(dict(FILES))
    yield s
    s.close()


def spec(md5s: dict[str, str | None] | None = None) -> DatasetSpec:
    md5s = md5s if md5s is not None else {n: md5(d) for n, d in FILES.items()}
    return DatasetSpec("fake set", FOLDER, RECORD, tuple(Archive(n, md5s[n]) for n in FILES), "test")


def test_full_download_unpacks_and_verifies(server, tmp_path):
    lines = []
    folder = download(spec(), tmp_path / "data", server=server.url, progress=False, log=lines.append)
    assert folder == tmp_path / "data" / FOLDER
    assert len(list((folder / "audio").iterdir())) == 40
    assert (folder / "audio" / "park-x-3-a.wav").read_bytes() == bytes([3]) * 5000
    assert (folder / "evaluation_setup" / "fold1_train.csv").is_file()
    assert all(r is None for _, r in server.requests)  # nothing to resume
    assert "MD5 ok" in lines[1] and "all 40 files" in lines[-1]


def test_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    downloads = tmp_path / "data" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "fake.audio.1.zip.part").write_bytes(AUDIO[:1000])
    download(spec(), tmp_path / "data", server=server.url, progress=False, log=lambda _: None)
    assert ("/records/42/files/fake.audio.1.zip", "bytes=1000-") in server.requests
    assert (downloads / "fake.audio.1.zip").read_bytes() == AUDIO


def test_wrong_md5_is_one_line_and_nothing_is_unpacked(server, tmp_path):
    bad = spec({"fake.audio.1.zip": "0" * 32, "fake.meta.zip": md5(META)})
    with pytest.raises(TinyAscError, match="fake.audio.1.zip: MD5 .* does not match") as err:
        download(bad, tmp_path / "data", server=server.url, progress=False, log=lambda _: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "data" / FOLDER).exists()
    assert not list((tmp_path / "data").rglob("fake.audio.1.zip*"))  # the bad file is gone, not resumed later


def test_checksums_from_the_record_when_the_registry_lacks_them(server, tmp_path):
    download(spec({n: None for n in FILES}), tmp_path / "data", server=server.url, progress=False,
             log=lambda _: None)
    assert ("/api/records/42", None) in server.requests
    server.listed_md5["fake.meta.zip"] = "f" * 32  # the record's checksum is the one checked
    with pytest.raises(TinyAscError, match=f"fake.meta.zip: MD5 {md5(META)} does not match the expected f{{32}}"):
        download(spec({n: None for n in FILES}), tmp_path / "other", server=server.url, progress=False,
                 log=lambda _: None)


def test_a_record_given_by_id_brings_its_zip_archives(server, tmp_path):
    server.files["README.md"] = b"not an archive"
    whole_record = DatasetSpec("fake set", FOLDER, RECORD, (), "test")  # as dcase24-eval with --record
    download(whole_record, tmp_path / "data", server=server.url, progress=False, log=lambda _: None)
    fetched = {path.rsplit("/", 1)[-1] for path, _ in server.requests if "/files/" in path}
    assert fetched == set(FILES) and len(list((tmp_path / "data" / FOLDER / "audio").iterdir())) == 40


def test_unreachable_server_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["download", "tau22", str(tmp_path / "data"), "--mirror", f"http://127.0.0.1:{port}",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinyasc: error: http://127.0.0.1:") and "cannot reach the server" in err
    assert "\n" not in err
    assert not (tmp_path / "data").exists()


def test_registry_names_sources_and_refuses_an_unknown_record():
    assert all(len(a.md5) == 32 for a in DATASETS["tau22"].archives) and len(DATASETS["tau22"].archives) == 18
    with pytest.raises(TinyAscError, match="not known to tinyasc"):
        spec_for("dcase24-eval")
    assert spec_for("dcase24-eval", record="123").record == "123"
    with pytest.raises(TinyAscError, match="unknown dataset 'tau99'; known: tau22"):
        spec_for("tau99")
