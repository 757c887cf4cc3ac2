"""A DCASE 2025 Task 1 inference package: what the official harness imports and measures.

For the label ``Lastname_Inst_task1_N`` the package is ``Lastname_Inst_task1`` and the module
``Lastname_Inst_task1_N`` in it (the harness imports ``<name>.<name>_<index>``, see
``tinyasc.deploy.dcase2025_api``). Written into OUT:

    pyproject.toml                     installable with ``pip install OUT``; depends on tinyasc
    Lastname_Inst_task1/
        __init__.py
        Lastname_Inst_task1_N.py       load_model, load_inputs, get_model_for_device, predict
        resources/__init__.py          the harness opens ``<name>.resources`` as a package
        resources/dummy.wav            read by test_complexity.py
        resources/test.csv             the official test split, read by evaluate_submission.py
        resources/Lastname_Inst_task1_N/general.pt, <device>.pt   the models as tinyasc model files

Up to four submissions share one package: a second label with another N adds its module and
model folder next to the first.
"""
from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import atomic_path, check_output_dir, write_text
from tinyasc.data.tau import shipped_list
from tinyasc.deploy.dcase2025_api import (GENERAL, get_model_for_device, harness_counts, input_shape, load_model,
                                          model_paths)
from tinyasc.deploy.submission import check_label
from tinyasc.modelfile import format as artifact
from tinyasc.modelfile import read_model_file

DUMMY_RATE = 44100  # the TAU recordings' rate: the dummy goes through the same resampling

MODULE = '''"""DCASE 2025 Task 1 inference module {label}: {description}.

Written by tinyasc {version} (tinyasc package-2025). The models are tinyasc model files in
resources/{label}/; tinyasc.deploy.dcase2025_api does the work.
"""
from importlib.resources import files

from tinyasc.deploy import dcase2025_api as api

MODEL = str(files(__package__) / "resources" / "{label}")


def load_model(model_file_path=None):
    return api.load_model(model_file_path or MODEL)


def load_inputs(file_paths, device_ids, model):
    return api.load_inputs(file_paths, device_ids, model)


def get_model_for_device(model, device_id):
    return api.get_model_for_device(model, device_id)


def predict(file_paths, device_ids, model_file_path=None, use_cuda=True):
    return api.predict(file_paths, device_ids, model_file_path or MODEL, use_cuda=use_cuda)
'''

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{package}"
version = "1.0.0"
description = "DCASE 2025 Task 1 inference package (written by tinyasc package-2025)"
requires-python = ">=3.10"
dependencies = ["tinyasc=={version}"]

[tool.setuptools]
packages = ["{package}", "{package}.resources"]

[tool.setuptools.package-data]
"{package}.resources" = ["*.wav", "*.csv", "*/*.pt"]
'''


def write_package(model: str | Path, label: str, out: str | Path) -> dict:
    """Write (or add submission N to) the inference package for ``label`` in ``out``; returns what
    was written, each model's MACs and bytes as the harness will read them, and tinyasc's complexity."""
    package, index = check_label(label).rsplit("_", 1)
    general_path, device_paths = model_paths(Path(model))
    models = load_model(str(model))  # loads and checks every model (one front end for all)
    shape = input_shape(models)
    harness = {name: harness_counts(get_model_for_device(models, name), shape) for name in models.model}
    out, version = Path(out), importlib.metadata.version("tinyasc")
    root, module = out / package, out / package / f"{label}.py"
    for taken in (module, root / "resources" / label):
        if taken.exists():
            raise TinyAscError(f"{taken}: already exists; choose another --out or submission index")
    pyproject = out / "pyproject.toml"
    if pyproject.is_file() and not re.search(rf'^name = "{package}"$', pyproject.read_text(encoding="utf-8"), re.M):
        raise TinyAscError(f"{pyproject}: belongs to another project; choose an empty --out")
    check_output_dir(out)

    resources = root / "resources"
    sources = {GENERAL: general_path, **device_paths}
    model_files = {}
    for name, path in sources.items():
        record, info, _ = read_model_file(path)
        model_files[name] = str(artifact.save(resources / label / f"{name}.pt", record, info))
    write_dummy(resources / "dummy.wav", models.general.duration)
    write_text(resources / "test.csv", shipped_list("test.csv"))
    write_text(resources / "__init__.py", '"""Resources of the inference package: dummy.wav, test.csv, models."""\n')
    if not (root / "__init__.py").exists():
        write_text(root / "__init__.py", f'"""{package}: DCASE 2025 Task 1 inference package."""\n')
    write_text(module, MODULE.format(label=label, version=version, description=models.general.describe()))
    write_text(pyproject, PYPROJECT.format(package=package, version=version))
    return {"package": package, "index": int(index), "out": str(out), "module": str(module), "pyproject": str(pyproject),
            "models": model_files,
            "input_shape": list(shape), "harness": harness,
            "complexity": {name: p.complexity() for name, p in models.predictors.items()}}


def write_dummy(path: Path, duration: float) -> Path:
    """A clip of the model's duration, quiet noise at the TAU rate (the harness only reads its shape)."""
    wave = 0.01 * np.random.default_rng(0).standard_normal(int(round(duration * DUMMY_RATE)))
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, wave.astype(np.float32), DUMMY_RATE, subtype="PCM_16")
    return path
