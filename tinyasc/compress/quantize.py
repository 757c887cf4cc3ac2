"""``tinyasc quantize``: a trained float model to int8 (QAT or post-training) or fp16, evaluated.

The int8 machinery (FX preparation, conversion, rebuilding) is ``tinyasc.modelfile.int8``; here are
the recipes that use it: report 001's QAT, post-training calibration on training clips, fp16.

The compressed model is saved as a recipe + weights file, then loaded back from that file and
evaluated beside the float model on the same test clips, so the numbers printed are those of what
was written.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import check_output_file
from tinyasc.compress.finetune import finetune, module_around
from tinyasc.data.build import datamodule_for
from tinyasc.evaluation.evaluate import evaluate_predictor, summary
from tinyasc.modelfile import Predictor, read_model_file, run_dir_of
from tinyasc.modelfile import format as artifact
from tinyasc.modelfile.int8 import calibrate, convert, float_islands, prepare

MODES = ("qat", "ptq", "fp16")


def to_fp16(model: nn.Module) -> nn.Module:
    """Every parameter and buffer in half precision (BN statistics included, as they are stored)."""
    return copy.deepcopy(model).cpu().eval().half()


def float_record(source) -> tuple[dict, Path]:
    record, _, file = read_model_file(source)
    if record.get("kind") != "network" or record.get("precision") != "fp32":
        what = "an ensemble" if record.get("kind") == "ensemble" else f"already {record.get('precision')}"
        raise TinyAscError(f"{file}: is {what}; quantize and prune start from a float32 model")
    return record, file


def calibration_batches(predictor: Predictor, dm, max_batches: int):
    """Log-mel features of training clips, without augmentation (what the model sees at test time)."""
    for i, (waves, *_rest) in enumerate(dm.train_dataloader()):
        if i >= max_batches:
            return
        yield predictor.features(waves.float()).clone()


def output_file(out, source: Path, mode: str) -> Path:
    """Where the compressed model goes (default RUN/compressed/<name>-<mode>.pt), checked before any
    work: not a folder, and in a folder that exists or can be made and is writable."""
    return check_output_file(out or run_dir_of(source) / "compressed" / f"{source.stem}-{mode}.pt")


def quantize_model(source, mode: str | None = None, out=None, data_dir=None, epochs: int | None = None,
                   lr: float | None = None, calib_batches: int | None = None, progress: bool = True) -> dict:
    """Compress a float run; what the arguments leave open comes from the run's ``compress`` config
    section (the seed recipes fill it from their reports; the QAT defaults are report 001's)."""
    record, file = float_record(source)
    recipe_of_run = cfgmod.compress_settings(record["hyper_parameters"]["config"])
    mode = mode or recipe_of_run["mode"]
    if mode is None:
        raise TinyAscError(f"{file}: its config names no compress.mode; give --mode qat, ptq or fp16")
    if mode not in MODES:
        raise TinyAscError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    calib_batches = calib_batches or recipe_of_run["calib_batches"]
    out = output_file(out, file, mode)  # a bad --out fails now, not after fine-tuning or calibration
    float_pred = Predictor(record, str(file))
    hyper = record["hyper_parameters"]
    dm = datamodule_for(float_pred.config, data_dir, "fit", progress)
    network = artifact.build_network(record, str(file))
    example = torch.zeros(float_pred.input_shape)
    recipe: dict = {"mode": mode}
    if mode == "fp16":
        compressed, precision = to_fp16(network), "fp16"
    elif mode == "ptq":
        prepared = prepare(network, "ptq", example)
        recipe["calibration_clips"] = calibrate(prepared, calibration_batches(float_pred, dm, calib_batches))
        compressed, precision = convert(prepared), "int8"
    else:
        epochs = recipe_of_run["qat_epochs"] if epochs is None else epochs
        lr = recipe_of_run["qat_lr"] if lr is None else lr
        # The decay keeps the recipe's proportion (report 001: 16 of 24 epochs) when other epochs are asked for.
        decay = recipe_of_run["qat_decay_epochs"] * epochs / max(recipe_of_run["qat_epochs"], 1)
        schedule = {"name": "linear_decay", "final_ratio": recipe_of_run["qat_final_lr_ratio"], "decay_epochs": decay}
        module = module_around(record, prepare(network, "qat", example))
        finetune(module, dm, epochs, lr, schedule, progress)
        compressed, precision = convert(module.model), "int8"
        recipe.update(epochs=epochs, lr=lr, schedule=schedule)
    new_record = artifact.network_record(compressed, hyper, precision, mode if precision == "int8" else None,
                                         record.get("shapes"))
    artifact.save(out, new_record)  # written first, then evaluated as loaded back from disk
    compressed_pred = Predictor(artifact.read(out)["model"], str(out))
    float_m = evaluate_predictor(float_pred, dm, "test", progress)
    comp_m = evaluate_predictor(compressed_pred, dm, "test", progress)
    agree = float((float_m["outputs"]["logits"].argmax(1) == comp_m["outputs"]["logits"].argmax(1)).mean())
    info = {"source": str(file), "output": str(out), "mode": mode, "precision": precision, "recipe": recipe,
            "float_in_int8": float_islands(compressed) if precision == "int8" else [],
            "float": {**summary(float_m), "complexity": float_pred.complexity()},
            "compressed": {**summary(comp_m), "complexity": compressed_pred.complexity()},
            "prediction_agreement": agree}
    artifact.save(out, new_record, info)
    return info

