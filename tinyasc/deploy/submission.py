"""DCASE 2024 Task 1 submission package, one model per training split (5, 10, 25, 50, 100 %).

For a label ``Lastname_Inst_task1_N`` it writes, under the output folder, the layout the official
validator (toni-heittola/dcase2024_task1_submission_validator) and the upload expect:

- ``task1/<label>/<label>.output.split_<S>.csv`` per split: TAB-separated, header ``filename
  scene_label`` then the class names in class order; one row per evaluation clip with the predicted
  label and the class probabilities (softmax of the logits).
- ``task1/<label>/<label>.meta.yaml``: every field of the official form (``submission_meta``).
- ``<Lastname>_<Inst>_task1.zip``: every ``task1/<Lastname>_<Inst>_task1_<N>/`` folder under the
  output folder (a package holds up to four systems) and the technical report when given.

Models: run folders or model files (their split read from their config, or given as ``S=PATH``), or a
system folder whose ``results.json`` names the ``final_models`` per split. Every check (label,
authors, all five splits, each model within the DCASE limits) runs before anything is written.

Clips to predict: the evaluation set folder given (its ``evaluation_setup/fold1_test.csv``,
``test.csv`` or ``meta.csv``, else every audio file in it), or the development test set.
"""
from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import yaml

from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import atomic_path, check_output_dir, write_text
from tinyasc.complexity import MAX_BYTES, MAX_MACS, verdict
from tinyasc.data.build import datamodule_for
from tinyasc.deploy import submission_meta as meta_form
from tinyasc.deploy.predict import predict_logits
from tinyasc.evaluation.evaluate import evaluate_predictor
from tinyasc.metrics import probabilities
from tinyasc.modelfile import load_predictor

LABEL = re.compile(r"^([A-Za-z][A-Za-z-]*_[A-Za-z0-9-]+_task1)_[1-4]$")
SPLITS = (5, 10, 25, 50, 100)
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


def system_models(system_dir: Path) -> list[str]:
    """``S=PATH`` per split from a system folder's ``results.json`` (``final_models``)."""
    path = system_dir / "results.json"
    try:
        finals = json.loads(path.read_text(encoding="utf-8")).get("final_models")
    except (OSError, ValueError) as exc:
        raise TinyAscError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(finals, dict) or not finals:
        raise TinyAscError(f"{path}: no 'final_models' mapping of split to model file")
    return [f"{split}={system_dir / model}" for split, model in finals.items()]


def load_split_models(models: list[str]) -> dict[int, object]:
    """{split: predictor} from run folders, model files, ``S=PATH`` or system folders."""
    sources = []
    for text in models:
        path = Path(text)
        if path.is_dir() and (path / "results.json").is_file() and not (path / "checkpoints").is_dir():
            sources += system_models(path)
        else:
            sources.append(text)
    predictors: dict[int, object] = {}
    for source in sources:
        given, _, path = source.partition("=") if re.match(r"^\d+=", source) else ("", "", source)
        p = load_predictor(path)
        trained = str(p.config["data"]["split"])
        if not trained.isdigit() or (given and given != trained):
            raise TinyAscError(f"{path}: trained on split {trained}" + (f", not on split {given}" if given else
                               "; a submission needs the numbered splits 5, 10, 25, 50, 100"))
        split = int(trained)
        if split not in SPLITS:
            raise TinyAscError(f"{path}: trained on split {split}; DCASE 2024 has splits {', '.join(map(str, SPLITS))}")
        if split in predictors:
            raise TinyAscError(f"{path}: a second model for split {split} (first: {predictors[split].source})")
        predictors[split] = p
    missing = [s for s in SPLITS if s not in predictors]
    if missing:
        raise TinyAscError(f"no model for split {', '.join(map(str, missing))}: a DCASE 2024 submission needs one "
                           f"model per split 5, 10, 25, 50, 100")
    return predictors


def check_complexity(predictors: dict[int, object], allow_over_limit: bool) -> dict[int, dict]:
    complexities = {s: p.complexity() for s, p in predictors.items()}
    for s, c in complexities.items():
        if not verdict(c["bytes"], c["macs"])["fits"] and not allow_over_limit:
            raise TinyAscError(f"{predictors[s].source}: the split {s} model has {c['bytes']:,} parameter bytes "
                               f"({c['precision']}) and {c['macs']:,} MACs, over the DCASE limits ({MAX_BYTES:,} "
                               f"bytes, {MAX_MACS:,} MACs); compress it (tinyasc quantize) or pass --allow-over-limit")
    return complexities


def run_metrics(predictor, data_dir) -> dict | None:
    """The run's own ``metrics.json`` when ``predictor`` is the checkpoint that run evaluated, on the same
    data, after its last change: the development results then are the run's, not a second scoring."""
    file = Path(predictor.source)  # load_predictor names the file it read
    path = file.parent.parent / "metrics.json"
    if file.parent.name != "checkpoints" or not path.is_file() or path.stat().st_mtime < file.stat().st_mtime:
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    folder = data_dir or predictor.config["data"].get("dir")
    if folder is None or Path(saved.get("checkpoint", "")).resolve() != file.resolve() \
            or Path(saved.get("data", "")).resolve() != Path(folder).expanduser().resolve():
        return None
    return {**saved, "source": str(path)}


def check_report(report) -> Path | None:
    if report is None:
        return None
    report = Path(report)
    if not report.is_file():
        raise TinyAscError(f"{report}: technical report file does not exist")
    with open(report, "rb") as f:
        if f.read(5) != b"%PDF-":
            raise TinyAscError(f"{report}: not a PDF file (the challenge wants the technical report as PDF)")
    return report


def write_package_zip(out_dir: Path, label: str, report: Path | None) -> tuple[Path, list[str]]:
    """``<Lastname>_<Inst>_task1.zip`` of every ``task1/<Lastname>_<Inst>_task1_<N>/`` under ``out_dir``."""
    team = LABEL.match(label).group(1)
    folders = sorted(p for p in (out_dir / "task1").glob(f"{team}_[1-4]") if p.is_dir())
    zip_path = out_dir / f"{team}.zip"
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for folder in folders:
            for file in sorted(folder.iterdir()):
                if file.is_file() and not file.name.startswith("."):
                    z.write(file, f"task1/{folder.name}/{file.name}")
        if report is not None:
            z.write(report, f"task1/{team}.technical_report.pdf")
    return zip_path, [f.name for f in folders]


def write_submission(models: list, label: str, out_dir: str | Path, eval_dir=None, data_dir=None,
                     name: str | None = None, authors: list[str] | None = None, abbreviation: str | None = None,
                     describe: list[str] | None = None, external_datasets: list[str] | None = None,
                     source_code: str | None = None, report=None, allow_over_limit: bool = False,
                     progress: bool = True) -> dict:
    check_label(label)
    author_entries = meta_form.parse_authors(authors or [])
    given = meta_form.parse_description(describe or [])
    datasets = meta_form.parse_external_datasets(external_datasets or [])
    abbreviation = abbreviation or label.split("_")[0][:10]
    if len(abbreviation) > 10:
        raise TinyAscError(f"--abbreviation {abbreviation!r}: at most 10 characters")
    report = check_report(report)
    names = evaluation_files(eval_dir) if eval_dir else None
    predictors = load_split_models([str(m) for m in models])
    complexities = check_complexity(predictors, allow_over_limit)
    out_dir = check_output_dir(out_dir)
    package = out_dir / "task1" / label
    results, outputs, scored_by = {}, {}, {}
    for split in SPLITS:
        p = predictors[split]
        saved = run_metrics(p, data_dir) if names is not None else None
        if saved is not None:
            metrics, scored_by[split] = saved, saved["source"]
        else:
            dm = datamodule_for(p.config, data_dir, "test", progress)
            metrics, scored_by[split] = evaluate_predictor(p, dm, "test", progress), "evaluated now"
        results[split] = meta_form.development_results(metrics)
        if names is not None:
            probs, files = probabilities(predict_logits(p, [Path(eval_dir) / n for n in names])), names
        else:  # the development test set, in the order of its list
            o = metrics["outputs"]
            order = np.argsort(o["ids"])
            probs = probabilities(o["logits"][order])
            files = [dm.clips["test"][i].filename for i in o["ids"][order]]
        outputs[split] = str(write_output(package / f"{label}.output.split_{split}.csv", files, probs, p.classes))
    meta = meta_form.build_meta(label, name or f"tinyasc {predictors[100].describe()}", abbreviation, author_entries,
                                meta_form.system_description(predictors, given), complexities, results, datasets,
                                source_code)
    meta_path = write_text(package / f"{label}.meta.yaml",
                           "# DCASE 2024 Task 1 system meta information, written by tinyasc submit.\n"
                           "# total_model_size: bytes of parameters at their stored precision (largest split model); "
                           "macs: per 1 s clip (NeSsi).\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    zip_path, labels = write_package_zip(out_dir, label, report)
    return {"meta": str(meta_path), "outputs": outputs, "zip": str(zip_path), "zip_labels": labels,
            "report": str(report) if report else None,
            "complexity": {s: {k: complexities[s][k] for k in ("params", "bytes", "macs", "precision")}
                           | {"fits": verdict(complexities[s]["bytes"], complexities[s]["macs"])["fits"]}
                           for s in complexities},
            "results": {f"split_{s}": r for s, r in results.items()}, "scored_by": scored_by,
            "evaluated_on": str(eval_dir) if eval_dir else "development test set"}
