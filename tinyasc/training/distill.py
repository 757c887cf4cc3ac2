"""Knowledge distillation teachers: any model files run alongside the student (a run, a checkpoint,
a compressed model, an ensemble), or a file of precomputed teacher logits, so a large ensemble runs
once instead of at every step.

Config, under ``loss``::

    distill: {weight: 0.5, temperature: 2.0, teachers: [runs/t1/checkpoints/best.ckpt, runs/t2, ...]}
    distill: {weight: 0.5, temperature: 2.0, logits: runs/teacher_logits.npz}

Teachers are loaded through ``tinyasc.modelfile`` at the first training step (so evaluating the
student never needs them), kept out of the student's state dict and optimiser, and run without
gradients on the student's augmented batch: on its augmented features when they share the student's front
end, otherwise on its augmented waveform through their own front end. Several teachers are averaged
in logit space. A logits file holds, per clip file name, the teachers' mean logits on the clean
clip; when the student's batch was mixed (mixup), those teacher outputs are mixed alike.

Precompute a logits file::

    tinyasc teacher-logits runs/t1 runs/t2 --out teacher_logits.npz [--data DIR --split 25]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tinyasc.augment.mixup import mix
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import atomic_path
from tinyasc.data.build import datamodule_for
from tinyasc.data.datamodule import collate_batch
from tinyasc.modelfile import load_predictor


class Teachers:
    """Teacher outputs for a training batch, as probabilities at the distillation temperature."""

    def __init__(self, temperature: float = 2.0, teachers: list[str] | None = None, logits: str | None = None,
                 weight: float | None = None):  # weight: the loss's (DistillationLoss), taken here to share the config
        if bool(teachers) == bool(logits):
            raise TinyAscError("loss.distill: give either teachers (checkpoint paths) or logits (a file), not both")
        self.temperature = temperature
        self.paths = [str(p) for p in teachers or []]
        self.logits_path = logits
        self._loaded = None  # loaded teacher predictors (a plain list: not submodules of the student)
        self._file = None  # (row of each student clip id in the file, logits [rows, classes])

    def probs(self, student, batch, wave: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """``wave`` and ``feats``: the student's augmented waveforms and features of this batch."""
        if self.logits_path:
            logits = self._file_logits(student, batch[3]).to(wave.device)
            probs = F.softmax(logits / self.temperature, dim=1)
            return apply_mixes(probs, [*mixes(student.wave_augment), *mixes(student.spec_augment)])
        logits = torch.stack([self._run(t, student, wave, feats).to(wave.device)
                              for t in self._teachers(student, wave.device)])
        # Teachers run in inference mode; a clone outside it is an ordinary tensor the loss may keep.
        return F.softmax(logits.float().mean(dim=0) / self.temperature, dim=1).clone()

    def _teachers(self, student, device):
        if self._loaded is None:
            self._loaded = []
            for path in self.paths:
                teacher = load_predictor(path).to(device)
                _check_compatible(teacher, student, path)
                self._loaded.append(teacher)
        return self._loaded

    @staticmethod
    def _run(teacher, student, wave, feats):
        if teacher.frontends == [student.config["frontend"]]:  # every part of it reads the student's features
            return teacher.logits_from_features(feats.detach())
        return teacher.logits(wave.detach())

    def _file_logits(self, student, ids: torch.Tensor) -> torch.Tensor:
        if self._file is None:
            try:
                datamodule = student.trainer.datamodule
            except RuntimeError:  # a module not attached to a trainer
                datamodule = None
            if datamodule is None or "train" not in getattr(datamodule, "clips", {}):
                raise TinyAscError(f"{self.logits_path}: teacher logits are looked up by clip file name, which "
                                   f"needs the run's data module (train through tinyasc.experiment.train)")
            names = [c.filename for c in datamodule.clips["train"]]
            self._file = lookup_table(self.logits_path, names, student.classes)
        rows, logits = self._file
        picked = rows[ids.cpu()]
        if (picked < 0).any():
            missing = int(ids.cpu()[picked < 0][0])
            raise TinyAscError(f"{self.logits_path}: no teacher logits for training clip "
                               f"{student.trainer.datamodule.clips['train'][missing].filename}")
        return logits[picked]


def _check_compatible(teacher, student, path) -> None:
    if teacher.classes != student.classes:
        raise TinyAscError(f"{path}: teacher classes ({', '.join(teacher.classes)}) differ from the student's")
    if teacher.config["frontend"]["sample_rate"] != student.config["frontend"]["sample_rate"]:
        raise TinyAscError(f"{path}: teacher sample rate differs from the student's; precompute its logits "
                           f"with `tinyasc teacher-logits` and distil from the file")
    spec_mixup = any(getattr(m, "mixes_targets", False) for m in student.spec_augment)
    if teacher.frontends != [student.config["frontend"]] and spec_mixup:
        raise TinyAscError(f"{path}: a teacher with another front end cannot see the student's spectrogram "
                           f"mixup; list mixup under augment.waveform or use a logits file")


def mixes(chain):
    """The (perm, lam) of every mixup in an augmentation chain that mixed the current batch."""
    return [m.last_mix for m in chain if getattr(m, "mixes_targets", False) and m.last_mix is not None]


def apply_mixes(probs: torch.Tensor, mix_list) -> torch.Tensor:
    for perm, lam in mix_list:
        probs = mix(probs, perm, lam)
    return probs


def lookup_table(path, names: list[str], classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(file row for each name, or -1; logits [rows, classes]) from a precomputed logits file."""
    path = Path(path)
    if not path.is_file():
        raise TinyAscError(f"{path}: teacher logits file does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            filenames, logits, file_classes = data["filenames"], data["logits"], data["classes"]
    except (OSError, ValueError, KeyError) as exc:
        raise TinyAscError(f"{path}: not a teacher logits file (filenames, logits, classes): {exc}") from None
    if list(file_classes) != list(classes):
        raise TinyAscError(f"{path}: classes ({', '.join(file_classes)}) differ from the student's")
    position = {str(name): i for i, name in enumerate(filenames)}
    rows = torch.tensor([position.get(name, -1) for name in names], dtype=torch.long)
    return rows, torch.from_numpy(np.asarray(logits, dtype=np.float32))


def precompute_teacher_logits(teachers: list[str], out: str | Path, data_dir: str | None = None,
                              split: int | str | None = None, batch_size: int = 256, progress: bool = True) -> Path:
    """Run every teacher (any model file or run folder) once over a split's clips (training and
    validation recordings, no augmentation) and save their mean logits per clip file name to ``out``
    (.npz, written atomically)."""
    if not teachers:
        raise TinyAscError("no teachers given")
    total: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}
    classes = None
    for teacher in teachers:
        predictor = load_predictor(teacher)
        config = dict(predictor.config, data=dict(predictor.config["data"]))
        if split is not None:
            config["data"]["split"] = split
        dm = datamodule_for(config, data_dir, "fit", progress, batch_size)
        if classes is None:
            classes = predictor.classes
        elif predictor.classes != classes:
            raise TinyAscError(f"{teacher}: teacher classes differ from those of {teachers[0]}")
        names = [c.filename for c in dm.clips["train"]]
        for subset in ("train", "val"):
            for wave, _, _, ids in DataLoader(dm.sets[subset], batch_size=batch_size, collate_fn=collate_batch):
                for i, row in zip(ids.tolist(), predictor.logits(wave.float()).numpy()):
                    total[names[i]] = total.get(names[i], 0) + row
                    count[names[i]] = count.get(names[i], 0) + 1
    filenames = sorted(total)  # a clip only some teachers saw gets the mean of those
    logits = np.stack([total[n] / count[n] for n in filenames]).astype(np.float32)
    with atomic_path(out, suffix=".npz") as tmp:  # np.savez adds .npz to a name without it
        np.savez(tmp, filenames=np.array(filenames), logits=logits, classes=np.array(classes))
    return Path(out)
