"""Folders in TAU Urban Acoustic Scenes layout.

``meta.csv`` (TAB-separated: filename, scene_label, optional identifier and source_label) lists
every clip; split files list the clips of a training split and of the test set. Classes are read
from the data, sorted, so any labels work. Everything is validated here, once, where it enters:
a problem raises TinyAscError naming the file (where it really lies) and the row. A UTF-8 byte
order mark at the start of a list (spreadsheet exports write one) is accepted.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tinyasc.base.errors import TinyAscError

TAU_DEVICES_SEEN = ("a", "b", "c", "s1", "s2", "s3")
TAU_DEVICES_UNSEEN = ("s4", "s5", "s6")
SHIPPED_SPLITS = (5, 10, 25, 50)


@dataclass(frozen=True)
class Clip:
    filename: str
    label: str
    identifier: str
    device: str


def _read_tsv(path: Path, required: tuple[str, ...], text: str | None = None) -> list[dict]:
    if text is None:
        if not path.is_file():
            raise TinyAscError(f"{path}: file does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TinyAscError(f"{path}: cannot read ({exc})") from None
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows:
        raise TinyAscError(f"{path}: file is empty")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise TinyAscError(f"{path}: missing column(s) {', '.join(missing)}; expected TAB-separated columns "
                           f"{', '.join(required)} (found: {', '.join(header) or 'none'})")
    records = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise TinyAscError(f"{path}: line {line_no} has {len(row)} TAB-separated fields, expected {len(header)}")
        records.append(dict(zip(header, (cell.strip() for cell in row))))
    return records


class TauFolder:
    """A dataset folder in TAU layout: its clips, classes, devices, splits and test set."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise TinyAscError(f"{self.root}: data folder does not exist")
        self._real_root, self._real_dirs = os.path.realpath(self.root), {}
        meta_path = self.root / "meta.csv"
        self.clips: dict[str, Clip] = {}
        for rec in _read_tsv(meta_path, ("filename", "scene_label")):
            name = rec["filename"]
            self._check_inside(meta_path, name)
            if not rec["scene_label"]:
                raise TinyAscError(f"{meta_path}: {name} has an empty scene_label")
            self.clips[name] = Clip(name, rec["scene_label"], rec.get("identifier") or name,
                                    rec.get("source_label") or "unknown")
        if not self.clips:
            raise TinyAscError(f"{meta_path}: lists no clips")
        self.classes = sorted({c.label for c in self.clips.values()})

    def _check_inside(self, source: Path, name: str) -> None:
        """Refuse a name whose real path (symbolic links followed) lies outside the dataset folder."""
        folder, base = os.path.split(name)
        if os.path.isabs(name) or base in ("", ".", ".."):
            real = os.path.realpath(os.path.join(self._real_root, name))
        else:  # at TAU scale, resolve each folder once and look at each file only for being a link
            real = os.path.join(self._real_dir(folder), base)
            if os.path.islink(real):
                real = os.path.realpath(real)
        if os.path.isabs(name) or os.path.commonpath([real, self._real_root]) != self._real_root:
            raise TinyAscError(f"{source}: path {name!r} escapes the dataset folder")

    def _real_dir(self, folder: str) -> str:
        if folder not in self._real_dirs:
            self._real_dirs[folder] = os.path.realpath(os.path.join(self._real_root, folder))
        return self._real_dirs[folder]

    def path(self, filename: str) -> Path:
        return self.root / filename

    @property
    def devices(self) -> list[str]:
        return sorted({c.device for c in self.clips.values()})

    def split_file(self, split: int | str) -> tuple[Path, str | None]:
        """Where the list for ``split`` comes from: (path, shipped text or None)."""
        own = self.root / f"split{split}.csv"
        if own.is_file():
            return own, None
        if str(split) == "100":
            fold = self.root / "evaluation_setup" / "fold1_train.csv"
            if fold.is_file():
                return fold, None
            raise TinyAscError(f"{own}: split file does not exist (nor evaluation_setup/fold1_train.csv)")
        if str(split).isdigit() and int(split) in SHIPPED_SPLITS and self.looks_like_tau22():
            return Path(f"<tinyasc>/split{split}.csv"), shipped_list(f"split{split}.csv")
        raise TinyAscError(f"{own}: split file does not exist (and this folder is not TAU22, for which tinyasc "
                           f"ships the DCASE 2024 splits {', '.join(map(str, SHIPPED_SPLITS))})")

    def test_file(self) -> tuple[Path, str | None]:
        own = self.root / "test.csv"
        if own.is_file():
            return own, None
        fold = self.root / "evaluation_setup" / "fold1_evaluate.csv"
        if fold.is_file():
            return fold, None
        if self.looks_like_tau22():
            return Path("<tinyasc>/test.csv"), shipped_list("test.csv")
        raise TinyAscError(f"{own}: test list does not exist (nor evaluation_setup/fold1_evaluate.csv)")

    def _shown(self, path: Path) -> str:
        """A list's path as a problem line names it: relative to the dataset folder when inside it."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def looks_like_tau22(self) -> bool:
        return "audio/airport-lisbon-1000-40000-0-a.wav" in self.clips

    def read_list(self, path: Path, text: str | None = None,
                  mislabelled: dict[str, str] | None = None) -> list[Clip]:
        """Clips of a split/test list, checked against meta.csv (unknown files and label mismatches).

        Rows whose label differs from meta.csv are recorded in ``mislabelled`` (filename -> reason)
        when it is given, so they are reported together with the dataset's other problems; without
        it they raise at once, all of them in one error.
        """
        records = _read_tsv(path, ("filename",), text)
        unknown = [r["filename"] for r in records if r["filename"] not in self.clips]
        for name in unknown:  # meta.csv's own names were checked when it was read
            self._check_inside(path, name)
        if unknown:
            raise TinyAscError(f"{path}: {len(unknown)} file(s) not listed in meta.csv, e.g. {unknown[0]}")
        wrong = {}
        for r in records:
            label, meta_label = r.get("scene_label"), self.clips[r["filename"]].label
            if label and label != meta_label:
                wrong[r["filename"]] = f"is labelled {label!r} but meta.csv says {meta_label!r} ({self._shown(path)})"
        if wrong and mislabelled is None:
            first, reason = next(iter(wrong.items()))
            raise TinyAscError(f"{path}: {len(wrong)} file(s) labelled differently from meta.csv, e.g. {first} "
                               f"{reason}", details=[f"{f}: {r}" for f, r in wrong.items()])
        if mislabelled is not None:
            mislabelled.update(wrong)
        if not records:
            raise TinyAscError(f"{path}: lists no clips")
        return [self.clips[r["filename"]] for r in records]

    def split(self, split: int | str, mislabelled: dict[str, str] | None = None) -> list[Clip]:
        return self.read_list(*self.split_file(split), mislabelled=mislabelled)

    def test(self, mislabelled: dict[str, str] | None = None) -> list[Clip]:
        return self.read_list(*self.test_file(), mislabelled=mislabelled)

    def check_files_exist(self, clips: list[Clip], source: str | Path = "meta.csv") -> None:
        """``source``: the list that names the clips, a path (as ``split_file`` gives it) or a name in the folder."""
        missing = [c.filename for c in clips if not self.path(c.filename).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            where = source if isinstance(source, Path) else self.root / source
            raise TinyAscError(f"{where}: lists {missing[0]} but the file does not exist{more}")


def recording_segment(clip: Clip) -> tuple[tuple[str, str], int] | None:
    """(recording, segment index) of a clip named like TAU's segments,
    ``<scene>-<city>-<location>-<recording>-<segment>-<device>.wav`` (the synthetic set leaves out
    ``<recording>``): the recording is the name without its segment index (device included) together
    with the meta.csv identifier. None for a name without an integer segment field."""
    folder, base = os.path.split(clip.filename)
    parts = os.path.splitext(base)[0].split("-")
    if len(parts) < 3 or not parts[-2].isdigit():
        return None
    return (clip.identifier, os.path.join(folder, "-".join(parts[:-2] + parts[-1:]))), int(parts[-2])


def shipped_list(name: str) -> str:
    """A list tinyasc ships (the DCASE 2024 splits, the official test.csv) as text."""
    data = resources.files("tinyasc.data").joinpath("splits", name + ".gz").read_bytes()
    return gzip.decompress(data).decode("utf-8")


def device_group(device: str) -> str | None:
    if device in TAU_DEVICES_SEEN:
        return "seen"
    if device in TAU_DEVICES_UNSEEN:
        return "unseen"
    return None
