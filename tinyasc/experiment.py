"""One run, end to end: check the run folder, train, evaluate the best checkpoint, plot, write results.

A run folder holds ``config.yaml`` (the resolved config, seed included), ``checkpoints/`` (``last.ckpt``
and ``best.ckpt``), ``logs/`` (CSV, TensorBoard and the trackers ``trainer.loggers`` names), ``metrics.json``
(test metrics, complexity, the trained network's bytes as fp32, fp16 and int8 with their verdicts, and
with ``trainer.energy`` the training's energy), ``confusion_matrix.png`` and ``learning_curves.png``;
``left_out.csv`` lists the files --skip-bad-files left out.

With ``trainer.devices`` > 1 every process runs this whole program. Only the first process checks
and writes the run folder; all of them train, and all of them test, each on its shard of the test
set (see docs/distributed.md).
"""
from __future__ import annotations

import contextlib
import copy
import signal
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import check_output_dir, write_json, write_text
from tinyasc.complexity import verdict
from tinyasc.complexity.stored import stored_sizes
from tinyasc.data.build import make_datamodule
from tinyasc.evaluation.evaluate import evaluate, evaluate_sharded
from tinyasc.evaluation.plots import plot_confusion, plot_learning_curves
from tinyasc.modelfile import load_predictor
from tinyasc.modelfile.checkpoint import load_checkpoint
from tinyasc.modelfile.int8 import int8_measurement
from tinyasc.training.loggers import EnergyMeter, finish_trackers
from tinyasc.training.module import SceneClassifier
from tinyasc.training.optim import follows_metric
from tinyasc.training.trainer import is_first_process, make_trainer, quiet_lightning


# What a resumed run cannot change: the network and what feeds it.
FIXED_ON_RESUME = (("model", ("model",)), ("front end", ("frontend",)), ("clip length", ("data", "duration")))


def prepare_run_dir(run_dir: Path, resume: bool, first_process: bool = True) -> dict | None:
    """Checks before anything is written; returns the checkpoint to resume from (loaded)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not last.is_file():
            raise TinyAscError(f"{run_dir}: nothing to resume (no checkpoints/last.ckpt)")
        return load_checkpoint(last)  # fails cleanly on a damaged checkpoint before training starts
    if first_process and ((run_dir / "checkpoints").exists() or (run_dir / "config.yaml").exists()):
        raise TinyAscError(f"{run_dir}: already holds a run; use --resume to continue it or choose another --out")
    if first_process:  # a file, a path under a file, a read-only place: refused before any work
        existed = run_dir.exists()
        check_output_dir(run_dir)
        if not existed:
            run_dir.rmdir()  # nothing is left behind until every check has passed
    return None


def check_resume(run_dir: Path, checkpoint: dict, config: dict, classes: list[str]) -> None:
    """A resumed run may train longer or with other settings, but not on another network, front end
    or set of classes: the checkpoint could not be continued."""
    saved = checkpoint["hyper_parameters"]["config"]
    for what, keys in FIXED_ON_RESUME:
        old, new = saved, config
        for key in keys:
            old, new = old.get(key), new.get(key)
        if old != new:
            raise TinyAscError(f"{run_dir}: --resume cannot change the {what} (the run has {old!r}, asked for {new!r})")
    old_classes = list(checkpoint["hyper_parameters"]["classes"])
    if old_classes != list(classes):
        raise TinyAscError(f"{run_dir}: --resume cannot change the classes (the run has {', '.join(old_classes)}; "
                           f"the data has {', '.join(classes)})")


def train(config: dict, run_dir: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train a run, evaluate its best checkpoint on the test set and write the run folder; returns the
    results (``{}`` in the extra processes of a multi-process run)."""
    quiet_lightning()
    cfgmod.validate(config)  # a config built in Python meets the same schema as one from the command line
    run_dir = Path(run_dir)
    first = is_first_process()
    checkpoint = prepare_run_dir(run_dir, resume, first)
    L.seed_everything(config["seed"], workers=True, verbose=False)
    dm = make_datamodule(config, progress=progress)
    dm.setup("fit")
    if checkpoint is not None:
        check_resume(run_dir, checkpoint, config, dm.classes)
    has_val = len(dm.sets["val"]) > 0
    if not has_val and follows_metric(config["schedule"].get("name", "cosine_warmup")):
        raise TinyAscError(f"schedule {config['schedule']['name']!r} follows a validation metric, but no validation "
                           f"recordings are held out; set data.val_fraction > 0")
    module = SceneClassifier(config, dm.classes, dm.devices)
    resume_step = None if checkpoint is None else int(checkpoint["global_step"])
    trainer = make_trainer(config, run_dir, progress, fit=True, has_val=has_val, resume_step=resume_step)
    energy = config["trainer"].get("energy")
    meter = EnergyMeter(energy, run_dir) if first and energy else None  # checks codecarbon is there
    # Everything is checked: from here on the run folder is written.
    if first:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfgmod.save(config, run_dir / "config.yaml")
        if dm.left_out:
            write_text(run_dir / "left_out.csv",
                       "filename\tproblem\n" + "".join(f"{n}\t{why}\n" for n, why in dm.left_out.items()))
    start = time.time()
    try:
        with meter or contextlib.nullcontext():
            trainer.fit(module, datamodule=dm,
                        ckpt_path=None if checkpoint is None else run_dir / "checkpoints" / "last.ckpt")
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into SystemExit after its on_exception hooks
            # ... and leaves SIGINT ignored for good (a caller's next Ctrl-C, and every child process
            # started afterwards, would be deaf to it): give Python's handler back.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt(f"stopped at step {trainer.global_step}; continue with "
                                    f"`tinyasc train --out {run_dir} --resume`") from None
        raise
    finally:
        finish_trackers(trainer)
    train_seconds = time.time() - start
    # The other processes may have named a different default run folder: all take the first one's.
    ckpt = trainer.strategy.broadcast(str(run_dir / "checkpoints" / ("best.ckpt" if has_val else "last.ckpt")))
    # Processes started by re-launch, torchrun or srun are all still here: they test together, each
    # on its shard. After ddp_spawn/ddp_fork only this one is, and it tests alone.
    together = trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
    if together:
        result = evaluate_sharded(module, trainer, dm, ckpt)
        if result:
            plot_confusion(np.array(result["confusion"]), dm.classes, run_dir / "confusion_matrix.png",
                           title=f"macro accuracy {result['macro_accuracy']:.1%}", data=result["data"],
                           checkpoint=ckpt)
    else:
        result = evaluate(ckpt, progress=progress, datamodule=dm)
    if trainer.global_rank != 0:
        return {}
    result["train_seconds"] = round(train_seconds, 1)
    result["processes"] = trainer.world_size
    result["left_out_files"] = len(dm.left_out)
    result["deployable"] = deployable(ckpt, result["complexity"]["macs"])
    if meter is not None:
        result["energy"] = meter.result
    write_json(run_dir / "metrics.json", result)
    plot_learning_curves(run_dir / "logs" / "metrics.csv", run_dir / "learning_curves.png", title=run_dir.name)
    return result


PRECISIONS = ("fp32", "fp16", "int8")  # least to most lossy


def deployable(checkpoint, macs: int) -> dict:
    """Parameter bytes of the trained network as stored in fp32, in a real fp16 copy and in a real int8
    conversion (counted as ``tinyasc models`` counts them), each with the DCASE verdict; ``deploy_as``:
    the least lossy precision that fits, or None."""
    predictor = load_predictor(checkpoint)
    network, example = predictor.network_module().eval(), torch.zeros(predictor.input_shape)
    versions, out = {"fp32": network, "fp16": copy.deepcopy(network).half()}, {}
    try:
        versions["int8"] = int8_measurement(copy.deepcopy(network), example)[0]
    except TinyAscError as exc:  # a network without an int8 version: the reason instead of a size
        out["int8"] = {"bytes": None, "fits": False, "error": str(exc)}
    for precision, net in versions.items():
        n_bytes = stored_sizes(net)["bytes"]
        out[precision] = {"bytes": n_bytes, **verdict(n_bytes, macs)}
    out["deploy_as"] = next((p for p in PRECISIONS if out[p]["fits"]), None)
    return out


def train_seeds(config: dict, out: str | Path, n_seeds: int, progress: bool = True) -> dict:
    """One run per seed in out/seed<k>, then mean and std (over seeds) of the test metrics in out/seeds.json."""
    out = Path(out)
    seeds = [config["seed"] + k for k in range(n_seeds)]
    results = [train(dict(config, seed=seed), out / f"seed{seed}", progress=progress) for seed in seeds]
    if not all(results):
        return {}  # not the main process of a multi-device run
    metrics = {"macro_accuracy": [r["macro_accuracy"] for r in results], "accuracy": [r["accuracy"] for r in results],
               "log_loss": [r["log_loss"] for r in results]}
    for group in results[0].get("device_groups", {}):
        metrics[f"macro_accuracy_{group}"] = [r["device_groups"][group]["macro_accuracy"] for r in results]
    summary = {name: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "runs": v}
               for name, v in metrics.items()}
    write_json(out / "seeds.json", {"seeds": seeds, **summary})
    return {"seeds": seeds, **summary}
