"""Knowledge distillation teachers: trained checkpoints run alongside the student, or a file of
precomputed teacher logits, so a large ensemble runs once instead of at every step.

Config, under ``loss``::

    distill: {weight: 0.5, temperature: 2.0, teachers: [runs/t1/checkpoints/best.ckpt, ...]}
    distill: {weight: 0.5, temperature: 2.0, logits: runs/teacher_logits.npz}

Checkpoint teachers are loaded at the first training step (so evaluating the student never needs
them), kept out of the student's state dict and optimiser, and run in eval mode without gradients
on the student's augmented batch: on its augmented features when they share the student's front
end, otherwise on its augmented waveform through their own front end. Several teachers are averaged
in logit space. A logits file holds, per clip file name, the teachers' mean logits on the clean
clip; when the student's batch was mixed (mixup), those teacher outputs are mixed alike.

Precompute a logits file::

    python -m tinyasc.training.distill --teachers runs/t1 runs/t2 --out teacher_logits.npz [--data DIR --split 25]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tinyasc.errors import TinyAscError


class Teachers:
    """Teacher outputs for a training batch, as probabilities at the distillation temperature."""

    def __init__(self, temperature: float = 2.0, teachers: list[str] | None = None, logits: str | None = None,
                 weight: float | None = None):  # weight: the loss's (DistillationLoss), taken here to share the config
        if bool(teachers) == bool(logits):
            raise TinyAscError("loss.distill: give either teachers (checkpoint paths) or logits (a file), not both")
        self.temperature = temperature
        self.paths = [str(p) for p in teachers or []]
        self.logits_path = logits
        self._loaded = None  # loaded teacher SceneClassifiers (a plain list: not submodules of the student)
        self._file = None  # (row of each student clip id in the file, logits [rows, classes])

    def probs(self, student, batch, wave: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """``wave`` and ``feats``: the student's augmented waveforms and features of this batch."""
        if self.logits_path:
            logits = self._file_logits(student, batch[3]).to(wave.device)
            probs = F.softmax(logits / self.temperature, dim=1)
            return apply_mixes(probs, [*mixes(student.wave_augment), *mixes(student.spec_augment)])
        with torch.no_grad():
            logits = torch.stack([self._run(t, student, wave, feats) for t in self._teachers(student, wave.device)])
        return F.softmax(logits.float().mean(dim=0) / self.temperature, dim=1)

    def _teachers(self, student, device):
        if self._loaded is None:
            from tinyasc.evaluation.evaluate import load_module

            self._loaded = []
            for path in self.paths:
                teacher = load_module(path).to(device).eval().requires_grad_(False)
                _check_compatible(teacher, student, path)
                self._loaded.append(teacher)
        return self._loaded

    @staticmethod
    def _run(teacher, student, wave, feats):
        if teacher.config["frontend"] == student.config["frontend"]:
            return teacher.model(feats)
        return teacher(wave)

    def _file_logits(self, student, ids: torch.Tensor) -> torch.Tensor:
        if self._file is None:
            try:
                datamodule = student.trainer.datamodule
            except RuntimeError:  # a module not attached to a trainer
                datamodule = None
            if datamodule is None or "train" not in getattr(datamodule, "clips", {}):
                raise TinyAscError(f"{self.logits_path}: teacher logits are looked up by clip file name, which "
                                   f"needs the run's data module (train through tinyasc.training.run.train)")
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
                           f"with `python -m tinyasc.training.distill` and distil from the file")
    spec_mixup = any(getattr(m, "mixes_targets", False) for m in student.spec_augment)
    if teacher.config["frontend"] != student.config["frontend"] and spec_mixup:
        raise TinyAscError(f"{path}: a teacher with another front end cannot see the student's spectrogram "
                           f"mixup; list mixup under augment.waveform or use a logits file")


def mixes(chain):
    """The (perm, lam) of every mixup in an augmentation chain that mixed the current batch."""
    return [m.last_mix for m in chain if getattr(m, "mixes_targets", False) and m.last_mix is not None]


def apply_mixes(probs: torch.Tensor, mix_list) -> torch.Tensor:
    from tinyasc.augment.mixup import mix

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
    """Run every teacher (run folder or checkpoint) once over a split's clips (training and validation
    recordings, no augmentation) and save their mean logits per clip file name to ``out`` (.npz)."""
    from tinyasc.evaluation.evaluate import load_module, resolve_checkpoint
    from tinyasc.training.run import make_datamodule

    if not teachers:
        raise TinyAscError("no teachers given")
    total: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}
    classes = None
    for teacher in teachers:
        module = load_module(resolve_checkpoint(teacher)[0])
        config = dict(module.config, data=dict(module.config["data"]), trainer=dict(module.config["trainer"]))
        if split is not None:
            config["data"]["split"] = split
        config["trainer"]["eval_batch_size"] = batch_size
        dm = make_datamodule(config, data_dir, progress)
        dm.setup("fit")
        if classes is None:
            classes = module.classes
        elif module.classes != classes:
            raise TinyAscError(f"{teacher}: teacher classes differ from those of {teachers[0]}")
        names = [c.filename for c in dm.clips["train"]]
        with torch.no_grad():
            for subset in ("train", "val"):
                for wave, _, _, ids in DataLoader(dm.sets[subset], batch_size=batch_size, collate_fn=_whole_batch):
                    for i, row in zip(ids.tolist(), module(wave).float().numpy()):
                        total[names[i]] = total.get(names[i], 0) + row
                        count[names[i]] = count.get(names[i], 0) + 1
    filenames = sorted(total)  # a clip only some teachers saw gets the mean of those
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    logits = np.stack([total[n] / count[n] for n in filenames]).astype(np.float32)
    np.savez(out, filenames=np.array(filenames), logits=logits, classes=np.array(classes))
    return out


def _whole_batch(batch):
    return batch  # WaveSet.__getitems__ already returns a whole batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyasc.training.distill",
                                     description="Precompute the mean logits of teacher checkpoints on a split's "
                                                 "clips, for distillation from a file (loss.distill.logits).")
    parser.add_argument("--teachers", nargs="+", required=True, help="run folders or checkpoint files")
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument("--data", help="dataset folder (default: the one the first teacher was trained on)")
    parser.add_argument("--split", help="split to cover (default: each teacher's training split)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        out = precompute_teacher_logits(args.teachers, args.out, args.data, args.split, args.batch_size)
    except TinyAscError as exc:
        print(f"tinyasc: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote teacher logits to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
