"""DCASE 2024 Task 1 submission files, one trained model per training split.

For a label ``Lastname_Inst_task1_N`` and the models of splits 5 ... 100:

- ``<label>.output.split_<S>.csv`` per split: TAB-separated, header ``filename scene_label`` then
  the class names in class order; one row per evaluation clip with the predicted label and the
  class probabilities (softmax of the logits).
- ``<label>.meta.yaml``: submission and system information, ``system.complexity``
  (total_model_size in bytes, total_parameters, macs; the largest over the splits' models, as each
  must fit the limits) and ``results.development_dataset.split_<S>`` with overall, class-wise and
  device-wise accuracy (%) and log loss on the development test set. Overall accuracy and log loss
  are the class-wise means (DCASE's macro averages).

Clips to predict: the evaluation set folder given (its ``evaluation_setup/fold1_test.csv``,
``test.csv`` or ``meta.csv``, else every audio file in it), or the development test set.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import torch
import yaml

from tinyasc.audio.io import load_audio
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import atomic_path, write_text
from tinyasc.data.build import datamodule_for
from tinyasc.evaluation.evaluate import evaluate_predictor
from tinyasc.metrics import probabilities
from tinyasc.modelfile import load_predictor

LABEL = re.compile(r"^[A-Za-z][A-Za-z-]*_[A-Za-z0-9-]+_task1_[1-4]$")
AUDIO_SUFFIXES = (".wav", ".flac")


def check_label(label: str) -> str:
    if not LABEL.match(label or ""):
        raise TinyAscError(f"--label {label!r}: expected Lastname_Institution_task1_N with N in 1..4, "
                           "e.g. Schmid_CPJKU_task1_1")
    return label


def evaluation_files(folder: str | Path) -> list[str]:
    """Clip names (relative to ``folder``) of an evaluation set."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TinyAscError(f"{folder}: evaluation folder does not exist")
    for listing in (folder / "evaluation_setup" / "fold1_test.csv", folder / "test.csv", folder / "meta.csv"):
        if listing.is_file():
            with open(listing, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
            if not rows or "filename" not in rows[0]:
                raise TinyAscError(f"{listing}: expected a TAB-separated list with a 'filename' column")
            return [r["filename"].strip() for r in rows if r["filename"].strip()]
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not names:
        raise TinyAscError(f"{folder}: no evaluation list and no .wav/.flac files")
    return names


def predict_folder(predictor, folder: str | Path, names: list[str], batch_size: int = 64) -> np.ndarray:
    """Class probabilities [clips, classes] for files ``folder/name`` (each cut/padded to one clip)."""
    folder, probs = Path(folder), []
    for i in range(0, len(names), batch_size):
        waves = np.stack([load_audio(folder / n, predictor.sample_rate, predictor.duration)
                          for n in names[i:i + batch_size]])
        probs.append(probabilities(predictor.logits(torch.from_numpy(waves))))
    return np.concatenate(probs)


def write_output(path: str | Path, names: list[str], probs: np.ndarray, classes: list[str]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["filename", "scene_label", *classes])
        for name, p in zip(names, probs):
            w.writerow([name, classes[int(np.argmax(p))], *(f"{v:.6f}" for v in p)])
    return Path(path)


def read_output(path: str | Path, classes: list[str] | None = None) -> list[dict]:
    """Parse an output file back, checking its columns and that each row's probabilities and label agree."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or rows[0][:2] != ["filename", "scene_label"]:
        raise TinyAscError(f"{path}: header must start with filename, scene_label")
    header = rows[0][2:]
    if classes is not None and header != list(classes):
        raise TinyAscError(f"{path}: class columns {header} differ from {list(classes)}")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise TinyAscError(f"{path}: line {line} has {len(row)} fields, expected {len(rows[0])}")
        probs = np.array([float(v) for v in row[2:]])
        if row[1] != header[int(probs.argmax())]:
            raise TinyAscError(f"{path}: line {line} labels {row[1]!r} but its largest probability is "
                               f"{header[int(probs.argmax())]!r}")
        out.append({"filename": row[0], "scene_label": row[1], "probabilities": dict(zip(header, probs))})
    return out


def development_results(metrics: dict) -> dict:
    def entry(acc, loss):  # None: no test clips of that class or device
        return {"accuracy": None if acc is None else round(100 * float(acc), 2),
                "logloss": None if loss is None else round(float(loss), 3)}

    return {"overall": entry(metrics["macro_accuracy"], metrics["macro_log_loss"]),
            "class_wise": {c: entry(m["accuracy"], m["log_loss"]) for c, m in metrics["per_class"].items()},
            "device_wise": {d: entry(m["macro_accuracy"], m["log_loss"]) for d, m in metrics["per_device"].items()}}


def _augmentations(config: dict) -> str:
    names = [a["name"] for kind in ("waveform", "spectrogram") for a in (config["augment"].get(kind) or [])]
    return ", ".join(names) or "none"


def _networks(record: dict):
    if record["kind"] == "ensemble":
        for member in record["members"]:
            yield from _networks(member)
    else:
        yield record


def _compression(predictor) -> str:
    records = list(_networks(predictor.record))
    steps = sorted({"structured pruning" for r in records if r.get("shapes")}
                   | {f"{r['precision']} {'QAT' if r.get('mode') == 'qat' else 'conversion'}"
                      for r in records if r["precision"] != "fp32"})
    return ", ".join(steps) or "none"


def system_description(predictor) -> dict:
    config = predictor.config
    return {"input_sampling_rate": f"{config['frontend']['sample_rate'] / 1000:g}kHz",
            "acoustic_features": "log-mel energies", "data_augmentation": _augmentations(config),
            "machine_learning_method": predictor.describe(), "external_data_usage": "none",
            "model_compression": _compression(predictor)}


def write_submission(models: list, label: str, out_dir: str | Path, eval_dir=None, data_dir=None,
                     name: str | None = None, authors: list[str] | None = None, progress: bool = True) -> dict:
    check_label(label)
    out_dir = Path(out_dir)
    predictors: dict[int, object] = {}
    for source in models:
        p = load_predictor(source)
        split = p.config["data"]["split"]
        if not isinstance(split, int) and not str(split).isdigit():
            raise TinyAscError(f"{source}: trained on split {split!r}; a submission needs numbered splits")
        split = int(split)
        if split in predictors:
            raise TinyAscError(f"{source}: a second model for split {split} (first: {predictors[split].source})")
        predictors[split] = p
    out_dir.mkdir(parents=True, exist_ok=True)
    names = evaluation_files(eval_dir) if eval_dir else None
    results, complexities, outputs = {}, {}, {}
    for split in sorted(predictors):
        p = predictors[split]
        dm = datamodule_for(p.config, data_dir, "test", progress)
        metrics = evaluate_predictor(p, dm, "test", progress)
        results[f"split_{split}"] = development_results(metrics)
        complexities[split] = p.complexity()
        if names is not None:
            probs, files = predict_folder(p, eval_dir, names), names
        else:  # the development test set, in the order of its list
            o = metrics["outputs"]
            order = np.argsort(o["ids"])
            probs = probabilities(o["logits"][order])
            files = [dm.clips["test"][i].filename for i in o["ids"][order]]
        outputs[split] = str(write_output(out_dir / f"{label}.output.split_{split}.csv", files, probs, p.classes))
    first = predictors[min(predictors)]
    meta = {"submission": {"label": label, "name": name or f"tinyasc {first.describe()}",
                           "abbreviation": label.split("_")[0][:10], "authors": _authors(authors)},
            "system": {"description": system_description(first),
                       "complexity": {"total_model_size": max(c["bytes"] for c in complexities.values()),
                                      "total_parameters": max(c["params"] for c in complexities.values()),
                                      "macs": max(c["macs"] for c in complexities.values())}},
            "results": {"development_dataset": results}}
    meta_path = write_text(out_dir / f"{label}.meta.yaml",
                           "# DCASE 2024 Task 1 system meta information, written by tinyasc submit.\n"
                           "# total_model_size: bytes of parameters at their stored precision; macs: per 1 s clip "
                           "(NeSsi).\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return {"meta": str(meta_path), "outputs": outputs, "complexity": {s: complexities[s] for s in complexities},
            "results": results, "evaluated_on": str(eval_dir) if eval_dir else "development test set"}


def _authors(authors: list[str] | None) -> list[dict]:
    """'Firstname Lastname <email>' strings as DCASE author entries."""
    out = []
    for i, text in enumerate(authors or []):
        m = re.match(r"^\s*(.+?)\s+(\S+)\s*(?:<([^>]+)>)?\s*$", text)
        if not m:
            raise TinyAscError(f"--author {text!r}: expected 'Firstname Lastname <email>'")
        entry = {"lastname": m.group(2), "firstname": m.group(1)}
        if m.group(3):
            entry["email"] = m.group(3)
        entry["corresponding"] = i == 0
        out.append(entry)
    return out
