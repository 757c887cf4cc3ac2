"""Download the TAU datasets of DCASE Task 1 from Zenodo: resumable, checked, unpacked, verified.

``download(name_or_spec, out)`` fetches each archive of a dataset into ``out/downloads`` (a partial
file ``NAME.part`` is continued with an HTTP Range request), checks its MD5, unpacks the zip archives
into ``out`` and verifies the dataset folder: ``audio/``, ``meta.csv``, ``evaluation_setup/`` and
every file ``meta.csv`` names. An archive whose MD5 is wrong is deleted and nothing of it is unpacked.

Where a checksum is not in the registry below, it is read from the Zenodo record's file list
(``/api/records/ID``, which gives each file's MD5 and size); a record not in the registry is given
with ``record=`` (``tinyasc download NAME DIR --record ID``).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import socket
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import check_output_dir, os_reason

ZENODO = "https://zenodo.org"
CHUNK = 1 << 20
TIMEOUT_S = 60


@dataclass(frozen=True)
class Archive:
    name: str
    md5: str | None = None  # None: not known to tinyasc; taken from the Zenodo record's file list
    size: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    title: str
    folder: str  # the folder the archives unpack into
    record: str | None  # Zenodo record id; None: not known to tinyasc, give --record
    archives: tuple[Archive, ...]  # empty: the record's whole file list
    source: str  # where the record and the checksums come from


def _parts(prefix: str, n: int, md5s: tuple[str, ...] | None = None) -> tuple[Archive, ...]:
    names = [f"{prefix}.audio.{i}.zip" for i in range(1, n + 1)] + [f"{prefix}.doc.zip", f"{prefix}.meta.zip"]
    return tuple(Archive(name, md5) for name, md5 in zip(names, md5s or (None,) * len(names)))


_TAU22 = "TAU-urban-acoustic-scenes-2022-mobile-development"
_EVAL25 = "TAU-urban-acoustic-scenes-2025-mobile-evaluation"
DATASETS: dict[str, DatasetSpec] = {
    "tau22": DatasetSpec(
        "TAU Urban Acoustic Scenes 2022 Mobile, development (DCASE 2022-2025 Task 1)", _TAU22, "6337421",
        _parts(_TAU22, 16, (
            "8be14bdbd844481dce059ab31fbd2239", "e821abda49b069248bb75eab39df7575", "9c7897f78bb42ca0008936daddf3f8f3",
            "53ec3e37c0fc0be75f53c5abbc5300b8", "528422c33c5d10263203d2c61cb1f3be", "4759a9465c903e13e57d5e82e791fc28",
            "6d545fc83a55a17856a9ccc1ac9aff6b", "3a2916a9b5d3f43cc7a22a62b180b0d9", "071f664c86639ad730f7be4e3c39d886",
            "e0839d019e9b77ecbcbb0eff85965530", "fc60f1c83726be3963ae14fbcb95eeb4", "02246547f86c0a814dc63ec65d7033bb",
            "88ae9ef884665140d1572d8061725e00", "c3f400d74ae90e5190dc518cde43de47", "85594c6fe4f91c10aa2a410f748103b8",
            "6e2df8438c69f6789414aeba8cbad9d8",
            "9c4f610bdb5d3e3e72a17d393a26452a", "419b6ff6570f1030730352dc80cd8d15")),  # doc, meta
        "Zenodo record 6337421; MD5s as listed by the soundata loader soundata/datasets/tau2022uas_mobile.py "
        "(REMOTES), audio.1, .9 and .16 also matching an independent public download script"),
    "dcase24-eval": DatasetSpec(
        "TAU Urban Acoustic Scenes 2024 Mobile, evaluation (DCASE 2024 Task 1, no labels)",
        "TAU-urban-acoustic-scenes-2024-mobile-evaluation", None, (),
        "record not found in the sources tinyasc checked (the DCASE 2024 baseline README names only the folder); "
        "give --record with the id from the DCASE 2024 Task 1 page; files and MD5s then come from the record"),
    "dcase25-eval": DatasetSpec(
        "TAU Urban Acoustic Scenes 2025 Mobile, evaluation (DCASE 2025 Task 1, no labels)", _EVAL25, "15517945",
        _parts(_EVAL25, 12),
        "Zenodo record 15517945 as named by public DCASE 2025 download scripts; MD5s not known to tinyasc, read "
        "from the record's file list at download time"),
}


def spec_for(name: str, record: str | None = None) -> DatasetSpec:
    if name not in DATASETS:
        raise TinyAscError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if record is not None:
        if not str(record).isdigit():
            raise TinyAscError(f"--record {record!r}: a Zenodo record id is a number")
        spec = replace(spec, record=str(record), archives=spec.archives if spec.record == str(record) else ())
    if spec.record is None:
        raise TinyAscError(f"{name}: the Zenodo record of {spec.title} is not known to tinyasc ({spec.source})")
    return spec


# --- HTTP ---------------------------------------------------------------------------------------------
def _open(url: str, start: int = 0):
    headers = {"User-Agent": "tinyasc"} | ({"Range": f"bytes={start}-"} if start else {})
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the partial file is already whole (or longer than the file)
            return None
        raise TinyAscError(f"{url}: the server answered HTTP {exc.code} ({exc.reason})") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TinyAscError(f"{url}: cannot reach the server ({reason})") from None


def record_files(server: str, record: str) -> dict[str, Archive]:
    """{file name: Archive with MD5 and size} from a Zenodo record's file list."""
    url = f"{server}/api/records/{record}"
    with _open(url) as response:
        try:
            entries = json.loads(response.read().decode("utf-8"))["files"]
            out = {}
            for e in entries:
                algorithm, _, value = str(e.get("checksum", "")).partition(":")
                out[e["key"]] = Archive(e["key"], value if algorithm == "md5" else None, e.get("size"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TinyAscError(f"{url}: not a Zenodo record's file list") from None
    return out


def _fetch(url: str, part: Path, size: int | None, progress: bool, label: str) -> None:
    """Fetch ``url`` into ``part``, continuing what ``part`` already holds."""
    start = part.stat().st_size if part.is_file() else 0
    response = _open(url, start)
    if response is None:
        return
    with response:
        if start and response.status != 206:  # the server ignored the Range request: start afresh
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else size
        with open(part, "ab" if start else "wb") as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                                             unit_divisor=1024, desc=label, disable=not progress,
                                                             leave=False) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, socket.timeout) as exc:
                    raise TinyAscError(f"{url}: the download broke off at {f.tell():,} bytes ({exc}); run the same "
                                       f"command again to continue it") from None
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
    got = part.stat().st_size
    if total is not None and got != total:
        raise TinyAscError(f"{url}: got {got:,} of {total:,} bytes; run the same command again to continue it")


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- unpacking and the layout check --------------------------------------------------------------------
def unpack(archive: Path, out: Path) -> int:
    """Unpack a zip into ``out`` (members already there at their full size are kept); returns the count.

    Each member is written to a temporary name and renamed, so an interrupted unpack leaves no half
    file under a real name. No fsync per file: a dataset has ~230,000 of them, and a file lost to a
    crash is found again by the layout check and rewritten by the next run."""
    root = os.path.realpath(out)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            for m in members:  # all names are checked before anything is written
                target = os.path.realpath(os.path.join(root, m.filename))
                if os.path.isabs(m.filename) or os.path.commonpath([target, root]) != root:
                    raise TinyAscError(f"{archive}: member {m.filename!r} would land outside {out}; not unpacked")
            for m in members:
                target = out / m.filename
                if target.is_file() and target.stat().st_size == m.file_size:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
                with zf.open(m) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                os.replace(tmp, target)
    except zipfile.BadZipFile as exc:
        raise TinyAscError(f"{archive}: not a readable zip archive ({exc})") from None
    except OSError as exc:
        raise TinyAscError(f"{archive}: cannot unpack into {out} ({os_reason(exc)})") from None
    return len(members)


def check_layout(folder: Path) -> int:
    """The TAU layout: ``audio/``, ``meta.csv``, ``evaluation_setup/``, and every file meta.csv names;
    returns the number of files listed."""
    for part, kind in (("audio", "folder"), ("meta.csv", "file"), ("evaluation_setup", "folder")):
        path = folder / part
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            raise TinyAscError(f"{folder}: no {part} {kind} after unpacking; the archives do not hold a TAU dataset")
    with open(folder / "meta.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "filename" not in rows[0]:
        raise TinyAscError(f"{folder / 'meta.csv'}: no filename column")
    missing = [r["filename"] for r in rows if not (folder / r["filename"]).is_file()]
    if missing:
        raise TinyAscError(f"{folder}: {len(missing):,} of the {len(rows):,} files meta.csv lists are missing "
                           f"(first: {missing[0]}); run the same command again")
    return len(rows)


# --- the whole job -------------------------------------------------------------------------------------
def download(dataset: str | DatasetSpec, out: str | Path, server: str = ZENODO, record: str | None = None,
             progress: bool = True, keep_archives: bool = True, log=print) -> Path:
    """Fetch, check, unpack and verify a dataset into ``out``; returns the dataset folder."""
    spec = spec_for(dataset, record) if isinstance(dataset, str) else dataset
    out, server = Path(out).expanduser(), server.rstrip("/")
    folder = out / spec.folder
    archives = spec.archives
    if not archives or any(a.md5 is None for a in archives):  # the record's own list fills the gaps
        listed = record_files(server, spec.record)
        names = [a.name for a in archives] or sorted(n for n in listed if n.endswith(".zip"))
        absent = [n for n in names if n not in listed]
        if absent:
            raise TinyAscError(f"{server}/records/{spec.record}: the record has no file {absent[0]}")
        archives = tuple(a if a.md5 else listed[a.name] for a in archives) or tuple(listed[n] for n in names)
    existed = out.exists()
    check_output_dir(out)
    unknown = [a.name for a in archives if a.md5 is None]
    log(f"{spec.title}: {len(archives)} archives"
        + (f", {sum(a.size for a in archives) / 1e9:.1f} GB" if all(a.size for a in archives) else "")
        + f" from {server}/records/{spec.record} into {out}"
        + (f"; no MD5 known for {len(unknown)}, checked by layout only" if unknown else ""))
    downloads = out / "downloads"
    downloads.mkdir(exist_ok=True)
    try:
        _fetch_all(spec, archives, server, out, progress, keep_archives, log)
    except TinyAscError:
        for empty in (downloads, *(() if existed else (out,))):  # a run that got nothing leaves nothing
            with contextlib.suppress(OSError):
                empty.rmdir()
        raise
    n = check_layout(folder)
    log(f"{folder}: audio/, meta.csv and evaluation_setup/ present; all {n:,} files meta.csv lists are there")
    with contextlib.suppress(OSError):
        downloads.rmdir()  # only when empty
    return folder


def _fetch_all(spec: DatasetSpec, archives, server: str, out: Path, progress: bool, keep_archives: bool, log) -> None:
    downloads = out / "downloads"
    for i, a in enumerate(archives, 1):
        final, part = downloads / a.name, downloads / f"{a.name}.part"
        if not final.is_file():
            _fetch(f"{server}/records/{spec.record}/files/{a.name}?download=1", part, a.size, progress,
                   f"[{i}/{len(archives)}] {a.name}")
            if a.md5 is not None:
                got = md5_of(part)
                if got != a.md5:
                    part.unlink()
                    raise TinyAscError(f"{a.name}: MD5 {got} does not match the expected {a.md5}; the download was "
                                       f"deleted and nothing of it unpacked; run the command again to fetch it afresh")
            os.replace(part, final)
        n = unpack(final, out)
        log(f"[{i}/{len(archives)}] {a.name}: {'MD5 ok' if a.md5 else 'no MD5 known'}, {n:,} files unpacked")
        if not keep_archives:
            final.unlink()
