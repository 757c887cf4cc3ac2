import gzip
from importlib import resources

import pytest

from tinyasc.data.datamodule import SceneDataModule, holdout_recordings
from tinyasc.data.tau import TauFolder
from tinyasc.base.errors import TinyAscError


def test_folder_reads_classes_devices_and_splits(tau_dir):
    folder = TauFolder(tau_dir)
    assert folder.classes == ["airport", "bus", "park"]
    assert folder.devices == ["a", "b", "s4"]
    train, test = folder.split(100), folder.test()
    assert len(folder.split(50)) == (len(train) + 1) // 2
    assert {c.identifier for c in train}.isdisjoint({c.identifier for c in test})
    assert {c.device for c in test} == {"a", "b", "s4"}


def test_any_labels_work(tmp_path):
    root = tmp_path / "own"
    root.mkdir()
    (root / "meta.csv").write_text("filename\tscene_label\nx.wav\tkitchen\ny.wav\tgarage\n")
    folder = TauFolder(root)
    assert folder.classes == ["garage", "kitchen"] and folder.devices == ["unknown"]


def test_evaluation_setup_fallback(tau_dir):
    (tau_dir / "evaluation_setup").mkdir()
    (tau_dir / "split100.csv").rename(tau_dir / "evaluation_setup" / "fold1_train.csv")
    (tau_dir / "test.csv").rename(tau_dir / "evaluation_setup" / "fold1_evaluate.csv")
    folder = TauFolder(tau_dir)
    assert folder.split_file(100)[0].name == "fold1_train.csv" and len(folder.split(100)) > 0
    assert folder.test_file()[0].name == "fold1_evaluate.csv"


def test_shipped_dcase2024_splits_are_used_for_tau22(tmp_path):
    text = gzip.decompress(resources.files("tinyasc.data").joinpath("splits", "split5.csv.gz").read_bytes()).decode()
    rows = [line.split("\t") for line in text.splitlines()[1:]]
    assert len(rows) == 6980
    test_rows = gzip.decompress(resources.files("tinyasc.data").joinpath("splits", "test.csv.gz").read_bytes())
    assert len(test_rows.decode().splitlines()) - 1 == 29680
    root = tmp_path / "tau22"
    root.mkdir()
    test_text = test_rows.decode()
    meta = {f: l for f, l in rows}
    meta.update(dict(line.split("\t") for line in test_text.splitlines()[1:]))
    (root / "meta.csv").write_text("filename\tscene_label\n" + "".join(f"{f}\t{l}\n" for f, l in meta.items()))
    folder = TauFolder(root)
    assert folder.looks_like_tau22()
    assert len(folder.split(5)) == 6980 and len(folder.test()) == 29680
    with pytest.raises(TinyAscError, match="split10.csv"):
        folder.split(10)  # shipped, but lists files this folder's meta.csv lacks


@pytest.mark.parametrize("case,needle", [
    ("missing_folder", "data folder does not exist"),
    ("no_meta", "meta.csv: file does not exist"),
    ("wrong_columns", "missing column(s) scene_label"),
    ("ragged_row", "line 3 has 3 TAB-separated fields"),
    ("unknown_file", "split100.csv: 1 file(s) not listed in meta.csv"),
    ("label_mismatch", "is labelled 'tram' but meta.csv says"),
    ("escape", "escapes the dataset folder"),
    ("no_split", "split7.csv: split file does not exist"),
])
def test_bad_dataset_inputs(tau_dir, tmp_path, case, needle):
    meta = tau_dir / "meta.csv"
    lines = meta.read_text().splitlines()
    split = tau_dir / "split100.csv"
    if case == "missing_folder":
        target = tmp_path / "nowhere"
    else:
        target = tau_dir
    if case == "no_meta":
        meta.unlink()
    elif case == "wrong_columns":
        meta.write_text("filename\tlabel\n" + "\n".join(lines[1:]))
    elif case == "ragged_row":
        lines[2] = "\t".join(lines[2].split("\t")[:3])
        meta.write_text("\n".join(lines))
    elif case == "unknown_file":
        split.write_text(split.read_text() + "audio/ghost.wav\tbus\n")
    elif case == "label_mismatch":
        first = split.read_text().splitlines()[1].split("\t")[0]
        split.write_text(split.read_text() + f"{first}\ttram\n")
    elif case == "escape":
        meta.write_text(meta.read_text() + "../../etc/passwd\tbus\tx\ta\n")
    with pytest.raises(TinyAscError) as err:
        folder = TauFolder(target)
        folder.split(7 if case == "no_split" else 100)
    assert needle in str(err.value)


def test_holdout_is_by_recording_and_stable(tau_dir):
    clips = TauFolder(tau_dir).split(100)
    mask = holdout_recordings(clips, 0.5, seed=3)
    held = {c.identifier for c, m in zip(clips, mask) if m}
    kept = {c.identifier for c, m in zip(clips, mask) if not m}
    assert held.isdisjoint(kept)
    assert (mask == holdout_recordings(clips, 0.5, seed=3)).all()


def test_datamodule_batches(tau_dir):
    dm = SceneDataModule(tau_dir, batch_size=4, val_fraction=0.0, progress=False)
    dm.setup("fit")
    wave, labels, devices, ids = next(iter(dm.train_dataloader()))
    assert wave.shape == (4, 32000) and wave.dtype.is_floating_point
    assert labels.shape == devices.shape == ids.shape == (4,)
    assert len(dm.sets["test"]) == len(TauFolder(tau_dir).test())


def test_missing_audio_file_is_named(tau_dir):
    victim = sorted((tau_dir / "audio").iterdir())[0]
    victim.unlink()
    dm = SceneDataModule(tau_dir, progress=False)
    with pytest.raises(TinyAscError, match=f"lists audio/{victim.name} but the file does not exist"):
        dm.setup("fit")
