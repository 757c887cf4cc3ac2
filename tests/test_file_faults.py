"""Faults of the file system: full disk, read-only medium, no permission, a file where a folder goes.

The promise (docs/reliability.md): one TinyAscError line naming the path and the problem, no
temporary or half-built file left behind, nothing already written changed.

How faults are simulated: the tests run as root, which ignores chmod, and no small file system can
be mounted here, so
- a *real* ENOSPC comes from a temporary name pre-created as a symbolic link to ``/dev/full``
  (every write to it fails with "No space left on device");
- read-only (EROFS), permission (EACCES) and other full-disk (ENOSPC) faults are simulated by
  monkeypatching the write functions (``open``, ``os.open``, ``os.mkdir``, ``os.replace``,
  ``os.posix_fallocate``, ``torch.save``) to raise ``OSError(errno.X)`` for paths under one folder;
- "a file where a folder goes" is real: a regular file in the way.

The CLI-level rows of the same promise (including the checkpoint that fails to write on a full disk
inside a real Lightning run) are in ``FILE_CASES`` of tests/test_reliability.py; the helpers those
rows need are at the end of this module.
"""
from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import atomic_path, check_output_dir, write_json, write_text
from tinyasc.cli import main
from tinyasc.data import cache as cache_mod
from tinyasc.data.cache import load_or_build
from tinyasc.modelfile import format as artifact
from tinyasc.modelfile.checkpoint import load_checkpoint
from tinyasc.training.trainer import AtomicCheckpointIO


def os_error(code: int, path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def inside(path, root: Path) -> bool:
    try:
        real = os.path.realpath(os.fspath(path))
    except TypeError:  # a file descriptor
        return False
    return real == str(root) or real.startswith(str(root) + os.sep)


def refuse_writes(monkeypatch, root: Path, code: int = errno.EROFS) -> None:
    """Every call that would create, change or remove something under ``root`` raises OSError(code):
    a read-only medium (EROFS), a folder without permission (EACCES) or a full disk (ENOSPC).
    Reading goes through as usual. (Root ignores chmod, hence the monkeypatching.)"""
    root = Path(os.path.realpath(root))

    def refuse(path):
        raise os_error(code, path)

    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and inside(file, root):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    real_os_open = os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & writing and "dir_fd" not in kwargs and inside(path, root):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    for name in ("mkdir", "rmdir", "unlink", "remove"):
        real = getattr(os, name)

        def fake(path, *args, _real=real, **kwargs):
            if "dir_fd" not in kwargs and inside(path, root):
                refuse(path)
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, fake)
    for name in ("replace", "rename"):
        real = getattr(os, name)

        def fake2(src, dst, *args, _real=real, **kwargs):
            if inside(src, root) or inside(dst, root):
                refuse(dst)
            return _real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, name, fake2)


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``folder`` with its size and modification time: equal before and after = untouched."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name or p.name.startswith((".building-",
                                                                                                ".tinyasc-write-check")))


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# --- atomic_path ------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EIO])
def test_failed_write_keeps_the_previous_file_and_removes_the_temporary(tmp_path, code):
    """The writer puts half its content in the temporary file, then the OS refuses (simulated by raising
    the OSError a real writer would get)."""
    target = write_text(tmp_path / "run" / "metrics.json", "previous")
    with pytest.raises(TinyAscError) as err:
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise os_error(code, tmp)
    message = one_line(err)
    assert message.startswith(f"{target}: cannot write") and os.strerror(code) in message
    assert "previous file is kept" in message
    assert target.read_text() == "previous"
    assert leftovers(tmp_path) == [] and sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_real_full_disk_through_dev_full(tmp_path):
    """A real ENOSPC: the temporary name is a link to /dev/full, so the write itself fails."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    target = write_json(tmp_path / "metrics.json", {"good": 1})
    tmp_name = tmp_path / f".metrics.json.tmp-{os.getpid()}"
    tmp_name.symlink_to("/dev/full")
    with pytest.raises(TinyAscError) as err:
        write_json(target, {"new": list(range(10000))})
    assert "No space left on device" in one_line(err) and str(target) in str(err.value)
    assert target.read_text() == '{\n  "good": 1\n}'
    assert not tmp_name.exists() and not tmp_name.is_symlink()  # the link is removed, /dev/full is not
    assert Path("/dev/full").exists()


def test_failed_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    """The content is complete but the rename over the target is refused (read-only, simulated)."""
    target = write_text(tmp_path / "a.txt", "previous")
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(os_error(errno.EROFS, dst))
                        if Path(dst) == target else real(src, dst))
    with pytest.raises(TinyAscError) as err:
        write_text(target, "new")
    assert "Read-only file system" in one_line(err) and "previous file is kept" in str(err.value)
    assert target.read_text() == "previous" and leftovers(tmp_path) == []


def test_failed_first_write_leaves_nothing(tmp_path):
    target = tmp_path / "new.txt"
    with pytest.raises(TinyAscError) as err:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise os_error(errno.ENOSPC, tmp)
    assert "nothing was written" in one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through_unchanged(tmp_path):
    """Only file-system errors become TinyAscError; a bug in the writer keeps its own type."""
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "x.txt") as tmp:
            tmp.write_text("half")
            raise ValueError("a bug")
    assert list(tmp_path.iterdir()) == []


def test_folder_under_a_regular_file(tmp_path):
    (tmp_path / "blocker").write_text("keep me")
    with pytest.raises(TinyAscError) as err:
        write_text(tmp_path / "blocker" / "sub" / "x.txt", "new")
    assert str(tmp_path / "blocker" / "sub" / "x.txt") in one_line(err)
    assert (tmp_path / "blocker").read_text() == "keep me"


def test_checkpoint_writer_fails_with_one_line(tmp_path, monkeypatch):
    """Lightning's checkpoint writer (AtomicCheckpointIO) on a full disk: torch.save raises ENOSPC
    (simulated) after writing part of the file."""
    io_plugin = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    io_plugin.save_checkpoint({"epoch": 0, "state_dict": {"w": torch.ones(3)}}, target)
    real = torch.save

    def full(obj, f, *args, **kwargs):  # the writer passes an open file
        f.write(b"PK\x03\x04 truncated")
        raise os_error(errno.ENOSPC, f.name)

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(TinyAscError) as err:
        io_plugin.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.zeros(3)}}, target)
    monkeypatch.setattr(torch, "save", real)
    assert one_line(err) == f"{target}: cannot write (No space left on device); the previous file is kept"
    assert leftovers(tmp_path) == [] and torch.load(target, weights_only=True)["epoch"] == 0


@pytest.mark.parametrize("writer", ["checkpoint", "model-file"])
def test_real_full_disk_in_torch_save(tmp_path, writer):
    """A real ENOSPC (temporary name linked to /dev/full) inside the two torch.save writers: they write
    through an open file, so the error is an OSError that atomic_path turns into one line."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    target = tmp_path / ("last.ckpt" if writer == "checkpoint" else "model.pt")
    (tmp_path / f".{target.name}.tmp-{os.getpid()}").symlink_to("/dev/full")
    with pytest.raises(TinyAscError) as err:
        if writer == "checkpoint":
            AtomicCheckpointIO().save_checkpoint({"w": torch.ones(1000)}, target)
        else:
            artifact.save(target, {"kind": "network", "state_dict": {"w": torch.ones(1000)}})
    assert "No space left on device" in one_line(err) and list(tmp_path.iterdir()) == []


# --- check_output_dir --------------------------------------------------------------------------------
def test_output_dir_made_when_missing_and_left_clean(tmp_path):
    out = check_output_dir(tmp_path / "a" / "b")
    assert out == tmp_path / "a" / "b" and out.is_dir() and list(out.iterdir()) == []


def test_output_dir_existing_folder_untouched(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    before = tree(tmp_path)
    assert check_output_dir(tmp_path) == tmp_path
    assert tree(tmp_path) == before


def test_output_dir_is_a_file(tmp_path):
    f = tmp_path / "out"
    f.write_text("keep me")
    with pytest.raises(TinyAscError) as err:
        check_output_dir(f)
    assert one_line(err) == f"{f}: is a file, not a folder"
    assert f.read_text() == "keep me"


def test_output_dir_under_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("keep me")
    with pytest.raises(TinyAscError) as err:
        check_output_dir(f / "a" / "b")
    assert one_line(err) == f"{f / 'a' / 'b'}: cannot create this folder, {f} is a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and f.read_text() == "keep me"


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_output_dir_not_writable(tmp_path, monkeypatch, code):
    """An existing folder where files cannot be created (simulated: os.open refuses under it)."""
    out = tmp_path / "out"
    out.mkdir()
    refuse_writes(monkeypatch, out, code)
    with pytest.raises(TinyAscError) as err:
        check_output_dir(out)
    monkeypatch.undo()
    assert one_line(err) == f"{out}: cannot write in this folder ({os.strerror(code)})"
    assert out.is_dir() and list(out.iterdir()) == []  # a folder it did not make is kept


def test_output_dir_removes_the_folders_it_made_when_the_probe_fails(tmp_path, monkeypatch):
    """Parents are created, then the probe file is refused (a full disk, simulated): nothing stays."""
    out = tmp_path / "new" / "a" / "b"
    real_os_open = os.open

    def full(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and inside(path, tmp_path / "new"):
            raise os_error(errno.ENOSPC, path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", full)
    with pytest.raises(TinyAscError) as err:
        check_output_dir(out)
    monkeypatch.undo()
    assert "cannot write in this folder (No space left on device)" in one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_output_dir_that_cannot_be_created(tmp_path, monkeypatch):
    """The innermost folder is refused (read-only, simulated) after its parents were made: they go again."""
    out = tmp_path / "new" / "a" / "b"
    real_mkdir = os.mkdir

    def refused(path, *args, **kwargs):
        if Path(path) == out:
            raise os_error(errno.EROFS, path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refused)
    (tmp_path / "keep").mkdir()
    with pytest.raises(TinyAscError) as err:
        check_output_dir(out)
    monkeypatch.undo()
    assert one_line(err) == f"{out}: cannot create this folder (Read-only file system)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


# --- the waveform cache ------------------------------------------------------------------------------
@pytest.fixture
def wavs(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
        paths.append(p)
    return paths


def build(wavs, root, **kwargs):
    return load_or_build(wavs, 8000, 8000, root, progress=False, workers=1, **kwargs)


def assert_cache_error(err, root: Path, reason: str) -> None:
    message = one_line(err)
    assert message.startswith(f"{root}: cannot build the waveform cache"), message
    for word in (reason, "TINYASC_CACHE", "data.cache_dir"):
        assert word in message, message


def fail_at(where: str, monkeypatch, root: Path) -> str:
    """Make one step of a build fail the way the file system would; returns the expected reason."""
    if where == "allocate":  # a full disk: the space for waves.npy cannot be reserved
        monkeypatch.setattr(os, "posix_fallocate", lambda fd, offset, length: (_ for _ in ()).throw(
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
        return "No space left on device"
    if where == "manifest":  # the disk fills up after decoding, at the manifest
        real_open = builtins.open

        def full(file, mode="r", *args, **kwargs):
            if "w" in mode and Path(os.fspath(file)).name == "manifest.json":
                raise os_error(errno.ENOSPC, file)
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", full)
        monkeypatch.setattr(io, "open", full)
        return "No space left on device"
    if where == "permission":  # the folder exists but new entries are refused
        root.mkdir()
        refuse_writes(monkeypatch, root, errno.EACCES)
        return "Permission denied"
    assert where == "read-only"
    root.mkdir()
    refuse_writes(monkeypatch, root, errno.EROFS)
    return "Read-only file system"


@pytest.mark.parametrize("where", ["allocate", "manifest", "permission", "read-only"])
def test_cache_build_failure_is_one_line_and_leaves_nothing(wavs, tmp_path, monkeypatch, where):
    root = tmp_path / "cache"
    decoded = []
    real_load = cache_mod.load_audio
    monkeypatch.setattr(cache_mod, "load_audio", lambda *a, **k: decoded.append(a[0]) or real_load(*a, **k))
    reason = fail_at(where, monkeypatch, root)
    with pytest.raises(TinyAscError) as err:
        build(wavs, root)
    monkeypatch.undo()
    assert_cache_error(err, root, reason)
    if where == "allocate":
        assert decoded == []  # it failed before decoding anything
    assert not root.exists() or [p.name for p in root.iterdir() if not p.name.startswith(".lock-")] == []
    assert build(wavs, root).built  # once the fault is gone, the build works


def test_cache_reserves_its_whole_file_before_decoding(wavs, tmp_path, monkeypatch):
    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate on this platform")
    calls, decoded_before = [], []
    real_alloc, real_load = os.posix_fallocate, cache_mod.load_audio

    def spy(fd, offset, length):
        calls.append((offset, length, os.fstat(fd).st_size))
        return real_alloc(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", spy)
    monkeypatch.setattr(cache_mod, "load_audio", lambda *a, **k: decoded_before.append(len(calls)) or real_load(*a, **k))
    result = build(wavs, tmp_path / "cache")
    assert len(calls) == 1 and calls[0][0] == 0 and calls[0][1] == calls[0][2] >= 4 * 8000 * 2
    assert decoded_before and all(n == 1 for n in decoded_before)
    assert calls[0][1] == (result.folder / "waves.npy").stat().st_size


def test_cache_under_a_regular_file(wavs, tmp_path):
    (tmp_path / "blocker").write_text("keep me")
    root = tmp_path / "blocker" / "cache"
    with pytest.raises(TinyAscError) as err:
        build(wavs, root)
    assert_cache_error(err, root, "Not a directory")
    assert (tmp_path / "blocker").read_text() == "keep me"


def test_complete_cache_on_a_read_only_medium_is_used_without_writing(wavs, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    first = build(wavs, root)
    expected = np.array(first.waves)
    del first
    before = tree(root)
    refuse_writes(monkeypatch, root, errno.EROFS)
    again = build(wavs, root)
    assert not again.built and np.array_equal(np.asarray(again.waves), expected)
    monkeypatch.undo()
    assert tree(root) == before


def test_cache_lock_not_needed_on_a_read_only_medium(wavs, tmp_path, monkeypatch):
    """Even a cache copied onto read-only media without its lock files is usable."""
    root = tmp_path / "cache"
    del build(wavs, root).waves
    for lock in root.glob(".lock-*"):
        lock.unlink()
    refuse_writes(monkeypatch, root, errno.EROFS)
    assert not build(wavs, root).built


# --- commands that check their output path before any work -------------------------------------------
@pytest.fixture
def model_file(tmp_path, tau_dir):
    """An untrained float model file (as a run would write one) for commands that read a model."""
    config = cfgmod.resolve(None, [{"data": {"dir": str(tau_dir)}}])
    hyper = {"config": config, "classes": ["airport", "bus", "park"], "devices": ["a", "b"]}
    network = artifact.float_network({"hyper_parameters": hyper, "shapes": {}})
    return artifact.save(tmp_path / "model" / "float.pt", artifact.network_record(network, hyper))


def run_cli(argv, capsys) -> tuple[int, list[str]]:
    status = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, [line for line in err.splitlines() if line.startswith("tinyasc: error:")]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_timeline_out_dir_not_writable(tmp_path, monkeypatch, capsys, code):
    """The model does not exist: the --out-dir error can only come first if it is checked first."""
    out = tmp_path / "out"
    out.mkdir()
    refuse_writes(monkeypatch, out, code)
    status, lines = run_cli(["timeline", str(tmp_path / "no-model.pt"), str(tmp_path / "long.wav"),
                             "--out-dir", str(out)], capsys)
    monkeypatch.undo()
    assert status == 2 and lines == [f"tinyasc: error: {out}: cannot write in this folder ({os.strerror(code)})"]
    assert list(out.iterdir()) == []


def test_timeline_out_dir_with_a_folder_where_the_csv_goes(tmp_path, capsys):
    (tmp_path / "out" / "long.timeline.csv").mkdir(parents=True)
    status, lines = run_cli(["timeline", str(tmp_path / "no-model.pt"), "long.wav", "--out-dir",
                             str(tmp_path / "out")], capsys)
    assert status == 2 and len(lines) == 1 and f"{tmp_path / 'out' / 'long.timeline.csv'}: is a folder" in lines[0]


@pytest.mark.parametrize("mode", ["ptq", "qat"])
def test_quantize_out_not_writable_fails_before_any_work(model_file, tmp_path, monkeypatch, capsys, mode):
    """The dataset is missing: if data loading, calibration or fine-tuning came first, the error would
    name the dataset, not --out. The folder of --out refuses new files (simulated EROFS)."""
    out_dir = tmp_path / "readonly"
    out_dir.mkdir()
    refuse_writes(monkeypatch, out_dir, errno.EROFS)
    before = model_file.read_bytes()
    status, lines = run_cli(["quantize", str(model_file), "--mode", mode, "--out", str(out_dir / "q.pt"),
                             "--data", str(tmp_path / "no-dataset"), "--no-progress"], capsys)
    monkeypatch.undo()
    assert status == 2 and lines == [f"tinyasc: error: {out_dir}: cannot write in this folder (Read-only file system)"]
    assert list(out_dir.iterdir()) == [] and model_file.read_bytes() == before


@pytest.mark.parametrize("where", ["folder", "under-file"])
def test_quantize_bad_out_fails_before_any_work(model_file, tmp_path, capsys, where):
    blocker = tmp_path / "blocker"
    if where == "folder":
        blocker.mkdir()
        out, expected = blocker, f"{blocker}: is a folder"
    else:
        blocker.write_text("keep me")
        out, expected = blocker / "q.pt", f"{blocker}: is a file, not a folder"
    status, lines = run_cli(["quantize", str(model_file), "--mode", "ptq", "--out", str(out), "--data",
                             str(tmp_path / "no-dataset"), "--no-progress"], capsys)
    assert status == 2 and len(lines) == 1 and expected in lines[0], lines
    assert leftovers(tmp_path) == []


# --- helpers for FILE_CASES in tests/test_reliability.py ---------------------------------------------
_CASE_PATCHES = pytest.MonkeyPatch()  # undone by the case's ``extra`` (and by the patch itself once it fired)


def checkpoint_disk_full(env, argv: list[str]) -> list[str]:
    """The disk fills up while the 2nd ``last.ckpt`` of a real run is written: ``torch.save`` (inside
    the checkpoint writer) writes part of the file, then raises OSError(ENOSPC) (simulated). Only
    writes under ``env.tmp`` are affected, so a case that fails early leaks nothing harmful."""
    real = torch.save
    calls: list[str] = []

    def save(obj, f, *args, **kwargs):
        name = getattr(f, "name", f)  # the writer passes an open file
        if isinstance(name, (str, os.PathLike)) and Path(name).name.startswith(".last.ckpt.tmp-") and inside(name, env.tmp):
            calls.append(str(name))
            if len(calls) == 2:
                _CASE_PATCHES.undo()
                f.write(b"PK\x03\x04 half a checkpoint")
                raise os_error(errno.ENOSPC, name)
        return real(obj, f, *args, **kwargs)

    _CASE_PATCHES.setattr(torch, "save", save)
    return argv


def checkpoint_disk_full_after(env) -> None:
    """No temporary file is left, and the last good last.ckpt (the first epoch's) still loads."""
    _CASE_PATCHES.undo()
    run = env.tmp / "new"
    assert [p.name for p in run.rglob("*") if ".tmp-" in p.name] == []
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0


def no_partial_files(*folders: Path) -> None:
    for folder in folders:
        assert leftovers(folder) == [], leftovers(folder)
        assert [p.name for p in folder.rglob("*.timeline.*")] == []
        assert [p.name for p in folder.rglob("*-ptq.pt")] == []


def blocker(env) -> Path:
    """A regular file standing where a folder is wanted (``env.tmp/blocker``)."""
    path = env.tmp / "blocker"
    path.write_text("keep me")
    return path


def audio_file(env) -> Path:
    return sorted((env.data / "audio").glob("*.wav"))[0]


def blocker_kept_and_no_partial_files(env) -> None:
    assert (env.tmp / "blocker").read_text() == "keep me"
    no_partial_files(env.tmp, env.run, env.data)
    assert [p.name for p in env.tmp.rglob("*") if p.name.startswith(".building-")] == []
