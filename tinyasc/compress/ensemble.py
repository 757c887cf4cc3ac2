"""Building ensembles: weights averaged as given, or a linear combination fitted on held-out clips.

Averaging (report 001): non-negative weights normalised to sum to 1 (its v1 is 0.5/0.5, v2
0.6/0.4). Linear combination (report 003): one free weight per model and one bias per class,
fitted by minimising cross-entropy on clips every member held out. The result is a
``tinyasc.modelfile.Ensemble``, saved as a model file and evaluated like one model.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import check_output_file
from tinyasc.data.build import datamodule_for
from tinyasc.data.datamodule import WaveSet, collate_batch, holdout_recordings
from tinyasc.evaluation.evaluate import evaluate_predictor, summary
from tinyasc.modelfile import Ensemble, load_predictor, run_dir_of
from tinyasc.modelfile import format as artifact

# Report 001's two submissions: MofleNet + CP-ResNet logits averaged with these weights.
REPORT_001_WEIGHTS = {"v1": (0.5, 0.5), "v2": (0.6, 0.4)}


def average_weights(weights, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise TinyAscError(f"--weights: {len(weights)} value(s) for {n} model(s)")
    if not all(math.isfinite(w) for w in weights):
        raise TinyAscError(f"--weights {' '.join(map(str, weights))}: every weight must be a finite number "
                           "(not nan or inf)")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise TinyAscError(f"--weights {' '.join(map(str, weights))}: weights must be >= 0 with a positive sum")
    total = sum(weights)
    return [w / total for w in weights]


def fit_linear(member_logits: np.ndarray, labels: np.ndarray, l2: float = 1e-3, steps: int = 200):
    """Weights [N] and bias [K] minimising cross-entropy of sum_n w_n z_n + b (z: [N, M, K] logits).

    Starts from the plain average; a small L2 penalty keeps the fit finite when the held-out clips
    are separable (weights and bias would otherwise grow without bound) or members are identical.
    """
    z = torch.as_tensor(np.asarray(member_logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n, _, k = z.shape
    start = torch.full((n,), 1.0 / n, dtype=torch.float64)
    w = start.clone().requires_grad_(True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(torch.einsum("n,nmk->mk", w, z) + b, y)
        loss = loss + l2 * ((w ** 2).sum() + (b ** 2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().float().tolist(), b.detach().float().tolist()


def heldout_clips(members: list, data_dir=None, progress: bool = False, config: dict | None = None):
    """(data module, loader) over the training-split clips that every member held out for validation.

    Members trained with different seeds or fractions hold out different recordings; only clips
    none of them trained on give an honest fit, so the hold-outs are intersected. ``config``: whose
    data settings load the clips (the ensemble's: its clip length), by default the first member's.
    """
    first = members[0]
    for m in members[1:]:
        for key in ("dir", "split", "synthetic_clips", "synthetic_seed"):
            if data_dir is None and m.config["data"].get(key) != first.config["data"].get(key):
                raise TinyAscError(f"{m.source}: data.{key} is {m.config['data'].get(key)!r} but "
                                   f"{first.source} has {first.config['data'].get(key)!r}; a linear fit needs "
                                   "members trained on the same data and split")
    dm = datamodule_for(config or first.config, data_dir, "fit", progress)
    clips = dm.clips["train"]
    held = np.ones(len(clips), dtype=bool)
    for m in members:
        held &= holdout_recordings(clips, m.config["data"]["val_fraction"], m.config["seed"])
    usable = np.union1d(dm.sets["train"].rows, dm.sets["val"].rows)  # rows of files that decoded
    rows = np.intersect1d(np.flatnonzero(held), usable)
    if len(rows) == 0:
        raise TinyAscError(f"{dm.folder.root}: no recording is held out by every member (val_fraction / seed); "
                           "nothing to fit the linear combination on")
    val = dm.sets["val"]
    subset = WaveSet(val.waves, val.labels, val.devices, rows)
    return dm, DataLoader(subset, batch_size=dm.eval_batch_size, shuffle=False, collate_fn=collate_batch)


def build_ensemble(models: list, weights=None, linear: bool = False, out=None, data_dir=None,
                   progress: bool = True) -> dict:
    """Combine ``models`` (any model files), save the ensemble file, and evaluate every member and
    the ensemble on the test set; returns the file's info (written into it as well)."""
    if len(models) < 2:
        raise TinyAscError("ensemble: give at least two models")
    if linear and weights:
        raise TinyAscError("ensemble: --weights and --fit-linear exclude each other")
    out = check_output_file(out or run_dir_of(models[0]) / "compressed" / "ensemble.pt")  # before any work
    members = [load_predictor(m) for m in models]
    fit = {}
    if linear:
        probe = Ensemble(members, [1.0] * len(members))  # checks classes and clip format first
        _, loader = heldout_clips(members, data_dir, progress, probe.config)
        logits, labels = [], []
        for waves, y, *_ in loader:
            logits.append(probe.member_logits(waves.float()).numpy())
            labels.append(y.numpy())
        fitted, bias = fit_linear(np.concatenate(logits, axis=1), np.concatenate(labels))
        ensemble = Ensemble(members, fitted, bias, "linear")
        fit = {"clips": int(sum(len(y) for y in labels))}
    else:
        ensemble = Ensemble(members, average_weights(weights, len(members)), None, "average")
    dm = datamodule_for(ensemble.config, data_dir, "test", progress)
    # Every member scored alone on the ensemble's clips, counted on the input it gets there.
    columns = {f"model {i + 1}": {**summary(evaluate_predictor(m, dm, "test", progress)),
                                  "complexity": m.complexity(ensemble.duration)}
               for i, m in enumerate(members)}
    columns["ensemble"] = {**summary(evaluate_predictor(ensemble, dm, "test", progress)),
                           "complexity": ensemble.complexity()}
    info = {"output": str(out), "method": ensemble.method, "weights": ensemble.weights.tolist(),
            "bias": None if ensemble.bias is None else ensemble.bias.tolist(), "fit": fit, "results": columns,
            "description": ensemble.describe()}
    artifact.save(out, ensemble.record, info)
    return info
