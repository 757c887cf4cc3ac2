"""The ``<label>.meta.yaml`` of a DCASE 2024 Task 1 submission: every field of the official form.

The fields are those the official validator (toni-heittola/dcase2024_task1_submission_validator,
``main.py``) requires: ``submission`` {label, name, abbreviation, authors [{lastname, firstname, email,
affiliation, corresponding}]}, ``system`` {description {10 fields}, complexity, external_datasets,
source_code} and ``results.development_dataset.split_<S>`` for the five splits. What tinyasc knows
(front end, augmentations, models, compression, recipe differences between splits, complexity,
development results) is filled in; what it cannot know (external data, source code, other
adaptations) is null, as the form asks for a missing value, unless the user says otherwise.
"""
from __future__ import annotations

import re

from tinyasc.base.errors import TinyAscError

DESCRIPTION_FIELDS = ("input_sampling_rate", "acoustic_features", "data_augmentation", "machine_learning_method",
                      "external_data_usage", "complexity_management", "pipeline", "framework", "split_adaptations",
                      "system_adaptations")
EMAIL = re.compile(r"^[^@\s;]+@[^@\s;]+\.[^@\s;]+$")
AUTHOR_FORM = "'Firstname;Lastname;email;Affiliation' (add ';corresponding' to mark the corresponding author)"


def parse_authors(texts: list[str]) -> list[dict]:
    """``--author`` values as the form's author entries; exactly one is corresponding (the first one
    unless another is marked)."""
    if not texts:
        raise TinyAscError(f"--author: at least one author is required, as {AUTHOR_FORM}")
    out = []
    for text in texts:
        parts = [p.strip() for p in text.split(";")]
        marked = len(parts) == 5 and parts[4].lower() == "corresponding"
        if len(parts) not in (4, 5) or (len(parts) == 5 and not marked) or not all(parts[:4]):
            raise TinyAscError(f"--author {text!r}: expected {AUTHOR_FORM}")
        first, last, email, affiliation = parts[:4]
        if not EMAIL.match(email):
            raise TinyAscError(f"--author {text!r}: {email!r} is not an email address")
        out.append({"lastname": last, "firstname": first, "email": email, "corresponding": marked,
                    "affiliation": {"institute": affiliation}})
    marked = sum(a["corresponding"] for a in out)
    if marked > 1:
        raise TinyAscError(f"--author: {marked} authors are marked corresponding; the form allows one")
    if not marked:
        out[0]["corresponding"] = True
    return out


def parse_external_datasets(texts: list[str]) -> list[dict] | None:
    out = []
    for text in texts:
        parts = [p.strip() for p in text.split(";")]
        if len(parts) != 3 or not all(parts):
            raise TinyAscError(f"--external-dataset {text!r}: expected 'name;url;total audio length'")
        out.append({"name": parts[0], "url": parts[1], "total_audio_length": parts[2]})
    return out or None


def parse_description(texts: list[str]) -> dict:
    """``--describe FIELD=TEXT`` values; a field the form does not have is refused."""
    out = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or key.strip() not in DESCRIPTION_FIELDS or not value.strip():
            raise TinyAscError(f"--describe {text!r}: expected FIELD=TEXT with FIELD one of {', '.join(DESCRIPTION_FIELDS)}")
        out[key.strip()] = value.strip()
    return out


def _networks(record: dict):
    if record["kind"] == "ensemble":
        for member in record["members"]:
            yield from _networks(member)
    else:
        yield record


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


def _compression(records: list[dict]) -> list[str]:
    nets = [n for r in records for n in _networks(r)]
    return _unique([*("structured pruning" for n in nets if n.get("shapes")),
                    *(f"{n['precision']} {'QAT' if n.get('mode') == 'qat' else 'conversion'}"
                      for n in nets if n["precision"] != "fp32")])


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def split_adaptations(configs: dict[int, dict]) -> str:
    """Recipe settings that differ between the splits' models (the split itself aside)."""
    flat = {s: _flat(c) for s, c in configs.items()}
    keys = sorted({k for f in flat.values() for k in f} - {"data.split", "data.dir"})
    differing = [k for k in keys if len({repr(f.get(k)) for f in flat.values()}) > 1]
    if not differing:
        return "none: the same recipe for every split"
    return "; ".join(f"{k}: " + ", ".join(f"split {s} {flat[s].get(k)}" for s in sorted(flat)) for k in differing)


def system_description(predictors: dict[int, object], given: dict) -> dict:
    """The ten ``system.description`` fields from the splits' predictors; ``given`` (--describe) wins."""
    configs = {s: p.config for s, p in predictors.items()}
    records = [p.record for p in predictors.values()]
    rates = _unique(f"{c['frontend']['sample_rate'] / 1000:g}kHz" for c in configs.values())
    fe = next(iter(configs.values()))["frontend"]
    augment = _unique(a["name"] for c in configs.values() for kind in ("waveform", "spectrogram")
                      for a in (c["augment"].get(kind) or []))
    compression = _compression(records)
    distilled = any(c["loss"].get("distill") for c in configs.values())
    ensembles = any(r["kind"] == "ensemble" for r in records)
    pipeline = ["training" + (" with knowledge distillation" if distilled else ""),
                *(["ensembling"] if ensembles else []), *compression]
    described = {
        "input_sampling_rate": ", ".join(rates),
        "acoustic_features": f"log-mel energies ({fe['n_mels']} bands, window {fe['win_length']}, hop {fe['hop_length']}"
                             f"{', deltas' if fe.get('deltas') else ''})",
        "data_augmentation": ", ".join(augment) or None,
        "machine_learning_method": ", ".join(_unique(p.describe() for p in predictors.values())),
        "external_data_usage": None,
        "complexity_management": ", ".join(compression) or None,
        "pipeline": " > ".join(pipeline),
        "framework": "pytorch, lightning (tinyasc)",
        "split_adaptations": split_adaptations(configs),
        "system_adaptations": None,
    }
    return {**described, **given}


def development_results(metrics: dict) -> dict:
    """One split's results as the form wants them: accuracy in %, log loss; overall = class-wise means
    (DCASE's macro averages); a class or device without test clips is null."""
    def entry(acc, loss):
        return {"accuracy": None if acc is None else round(100 * float(acc), 2),
                "logloss": None if loss is None else round(float(loss), 3)}

    return {"overall": entry(metrics["macro_accuracy"], metrics["macro_log_loss"]),
            "class_wise": {c: entry(m["accuracy"], m["log_loss"]) for c, m in metrics["per_class"].items()},
            "device_wise": {d: entry(m["macro_accuracy"], m["log_loss"]) for d, m in metrics["per_device"].items()}}


def build_meta(label: str, name: str, abbreviation: str, authors: list[dict], description: dict,
               complexities: dict[int, dict], results: dict[int, dict], external_datasets, source_code) -> dict:
    """``system.complexity`` is the largest over the splits' models: each of them must fit the limits."""
    return {"submission": {"label": label, "name": name, "abbreviation": abbreviation, "authors": authors},
            "system": {"description": description,
                       "complexity": {"total_model_size": max(c["bytes"] for c in complexities.values()),
                                      "total_parameters": max(c["params"] for c in complexities.values()),
                                      "macs": max(c["macs"] for c in complexities.values())},
                       "external_datasets": external_datasets, "source_code": source_code},
            "results": {"development_dataset": {f"split_{s}": results[s] for s in sorted(results)}}}
