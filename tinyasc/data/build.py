"""A run's data module, built from its config (the dataset folder, or the built-in synthetic set)."""
from __future__ import annotations

from pathlib import Path

from tinyasc.data import synthetic
from tinyasc.data.cache import default_cache_root
from tinyasc.data.datamodule import SceneDataModule
from tinyasc.data.on_device import OnDeviceDataModule


def synthetic_dir(clips: int | None, seed: int, progress: bool = True) -> Path:
    """The built-in synthetic dataset, generated once into the cache folder."""
    clips = synthetic.DEFAULT_CLIPS if clips is None else clips
    folder = default_cache_root() / "synthetic" / f"v{synthetic.VERSION}-clips{clips}-seed{seed}"
    if not (folder / "meta.csv").is_file():
        print(f"Generating the synthetic scene dataset ({clips} clips) in {folder}")
        synthetic.synthesize(folder, n_clips=clips, seed=seed, progress=progress)
    return folder


def make_datamodule(config: dict, data_dir: str | Path | None = None, progress: bool = True) -> SceneDataModule:
    """The data module a config describes; ``data_dir`` replaces its dataset folder."""
    d = config["data"]
    data_dir = data_dir or d.get("dir") or synthetic_dir(d.get("synthetic_clips"), d.get("synthetic_seed", 0), progress)
    t = config["trainer"]
    kind = OnDeviceDataModule if d.get("on_device") else SceneDataModule  # configs saved before the key: False
    return kind(data_dir, split=d["split"], sample_rate=config["frontend"]["sample_rate"],
                duration=d["duration"], batch_size=t["batch_size"], eval_batch_size=t["eval_batch_size"],
                num_workers=d["num_workers"], val_fraction=d["val_fraction"], seed=config["seed"],
                cache_dir=d.get("cache_dir"), cache_dtype=d["cache_dtype"],
                skip_bad_files=d["skip_bad_files"], progress=progress)


def datamodule_for(config: dict, data_dir=None, stage: str = "fit", progress: bool = False,
                   batch_size: int | None = None) -> SceneDataModule:
    """The data module of the run a model was trained in (or of ``data_dir``), set up for ``stage``."""
    if batch_size:
        config = {**config, "trainer": {**config["trainer"], "eval_batch_size": batch_size}}
    dm = make_datamodule(config, data_dir, progress)
    dm.setup(stage)
    return dm
