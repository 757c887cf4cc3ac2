"""Commands that make and score runs: train, evaluate, teacher-logits."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.base.tables import format_table
from tinyasc.cli.common import show
from tinyasc.evaluation.evaluate import evaluate
from tinyasc.experiment import PRECISIONS, train, train_seeds
from tinyasc.training.distill import precompute_teacher_logits
from tinyasc.training.trainer import is_first_process


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a model (default: DCASE 2024 baseline on the synthetic set)",
                       description="Train a scene classifier with PyTorch Lightning, then evaluate it on the test "
                                   "set. Without --config or --data, the built-in synthetic dataset is generated "
                                   "once, cached, and trained on with a quick profile of a few epochs.")
    p.add_argument("--config", help="recipe name from `tinyasc configs` or a YAML file; flags below override it")
    p.add_argument("--model", help="model name from `tinyasc models` (brings its report's front end)")
    p.add_argument("--data", help="dataset folder in TAU layout (meta.csv + split files)")
    p.add_argument("--split", help="training split: 5, 10, 25, 50 or 100 (splitN.csv)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--out", help="run folder (default runs/<model>-<date>-<time>)")
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train N runs with seeds seed, seed+1, ... into --out/seed<k>; report mean and std")
    p.add_argument("--devices", help="number of devices (GPUs or CPU processes) for Lightning, or 'auto'")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--skip-bad-files", action="store_true", help="leave unusable audio files out instead of stopping")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=0.002 (repeatable)")
    p.add_argument("--logger", action="append", default=[], choices=["tensorboard", "wandb", "mlflow"],
                   help="also log to this tracker (repeatable; the CSV log is always written): wandb and mlflow "
                        "need the extras tinyasc[wandb] / tinyasc[mlflow] and keep their files in the run folder")
    p.add_argument("--energy", action="store_true",
                   help="measure the training's energy (kWh, CO2) with codecarbon, offline (extra tinyasc[energy])")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("evaluate", help="evaluate a run or any model file on its test set",
                       description="Accuracy, macro class-wise accuracy, log loss, per class and per device "
                                   "(seen/unseen for TAU devices); writes metrics.json and confusion_matrix.png "
                                   "into the run folder (metrics-<data folder>.json with --data; a compressed or "
                                   "ensemble file gets <file>.metrics.json beside it).")
    p.add_argument("run", help="run folder, checkpoint, or a quantized/pruned/ensemble model file")
    p.add_argument("--data", help="dataset folder (default: the one the run was trained on)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("teacher-logits", help="precompute teachers' mean logits for distillation from a file",
                       description="Run every teacher once over a split's training and validation clips (no "
                                   "augmentation) and save their mean logits per clip file name (.npz), for "
                                   "loss.distill.logits.")
    p.add_argument("teachers", nargs="+", help="run folders or model files (checkpoints, compressed, ensembles)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--data", help="dataset folder (default: the one each teacher was trained on)")
    p.add_argument("--split", help="split to cover (default: each teacher's training split)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--no-progress", action="store_true")


def config_from_args(args) -> dict:
    """The run's config from the command line, through the same ``config.resolve`` as the Python API."""
    base = None
    if args.resume and not (Path(args.out) / "config.yaml").is_file():
        raise TinyAscError(f"{args.out}: nothing to resume (no config.yaml of a run in this folder)")
    if args.resume:
        saved = Path(args.out) / "config.yaml"
        base = cfgmod.merge(cfgmod.DEFAULTS, cfgmod.load_yaml(saved))
        cfgmod.validate(base, str(saved))
    flags = {"data.dir": args.data, "data.split": args.split, "trainer.epochs": args.epochs,
             "trainer.batch_size": args.batch_size, "seed": args.seed, "trainer.devices": args.devices,
             "data.skip_bad_files": True if args.skip_bad_files else None,
             "trainer.energy": True if args.energy else None}
    overrides = [cfgmod.parse_override(f"{key}={value}") for key, value in flags.items() if value is not None]
    overrides += [cfgmod.parse_override(o) for o in args.overrides]
    config = cfgmod.resolve(None if args.resume else args.config, overrides, base=base, model=args.model)
    loggers = config["trainer"].get("loggers", ["csv", "tensorboard"])
    config["trainer"]["loggers"] = list(dict.fromkeys([*loggers, *args.logger]))  # --logger adds to them
    return config


def cmd_train(args) -> int:
    if args.resume and not args.out:
        raise TinyAscError("--resume needs --out RUN_FOLDER (the run to continue)")
    if args.seeds < 1 or (args.seeds > 1 and args.resume):
        raise TinyAscError(f"--seeds {args.seeds}: give N >= 1, and resume one seed's run with --out RUN/seed<k>")
    config = config_from_args(args)
    out = Path(args.out or f"runs/{config['model']['name']}-{datetime.now():%Y%m%d-%H%M%S}")
    if is_first_process():
        print(f"run folder: {out}", flush=True)
    if args.seeds > 1:
        summary = train_seeds(config, out, args.seeds, progress=not args.no_progress)
        if summary:
            print(f"\nMean and standard deviation over seeds {', '.join(map(str, summary['seeds']))} "
                  f"({out}/seeds.json)")
            for name, s in summary.items():
                if name != "seeds":
                    fmt = "{:.3f}" if name == "log_loss" else "{:.2%}"
                    print(f"{name:<28} {fmt.format(s['mean']):>9} +- {fmt.format(s['std'])}")
        return 0
    result = train(config, out, resume=args.resume, progress=not args.no_progress)
    if result:
        print(results_table(result, out))
    return 0


def results_table(result: dict, run_dir: Path | None = None) -> str:
    c = result["complexity"]
    rows = [("macro class-wise accuracy", f"{result['macro_accuracy']:.2%}"),
            ("accuracy", f"{result['accuracy']:.2%}"), ("log loss", f"{result['log_loss']:.3f}")]
    for group, m in result.get("device_groups", {}).items():
        rows.append((f"macro accuracy, {group} devices", f"{m['macro_accuracy']:.2%}"))
    rows += [("test clips", str(result["n"])), ("parameters", f"{c['params']:,}"), ("MACs per 1 s", f"{c['macs']:,}")]
    rows += deployable_rows(result["deployable"]) if result.get("deployable") else [
        (f"bytes ({c['precision']})", f"{c['bytes']:,}"), ("fits DCASE limits", "yes" if c["fits"] else "no")]
    if "train_seconds" in result:
        rows.append(("training time", f"{result['train_seconds']:.0f} s"))
    if "energy" in result:
        e = result["energy"]
        rows.append(("training energy", f"{e['kwh']:.4f} kWh, {1000 * e['co2_kg']:.1f} g CO2-eq"))
    if result.get("left_out_files"):
        rows.append(("files left out (left_out.csv)", f"{result['left_out_files']:,}"))
    title = "Results" + (f" ({run_dir})" if run_dir else "")
    per_device = "per device: " + "  ".join(f"{d} {m['accuracy']:.0%}" for d, m in result["per_device"].items())
    notes = [per_device]
    if "energy" in result:
        notes.append(f"energy: {result['energy']['method']}; CO2 from the {result['energy']['co2_basis']}")
    deploy = (result.get("deployable") or {}).get("deploy_as")
    if deploy and deploy != "fp32":
        mode = "fp16" if deploy == "fp16" else "qat (or ptq)"
        notes.append(f"to deploy: tinyasc quantize {run_dir or result['checkpoint']} --mode {mode}  (fits DCASE as "
                     f"{deploy}; the fp32 checkpoint does not)")
    elif "deployable" in result and not deploy:
        notes.append("no precision fits the DCASE limits (128,000 B, 30 M MACs); see tinyasc prune")
    return "\n".join(["", format_table([title, ""], [list(r) for r in rows]), *notes])


def deployable_rows(deployable: dict) -> list[tuple[str, str]]:
    """Bytes and DCASE verdict of the real fp32, fp16 and int8 versions of a trained network."""
    rows = []
    for precision in PRECISIONS:
        d = deployable[precision]
        verdict = ("fits" if d["fits"] else "does not fit") if d["bytes"] is not None else "no int8 version"
        rows.append((f"bytes as {precision}", (f"{d['bytes']:,}  " if d["bytes"] is not None else "") + verdict))
    return rows


def cmd_evaluate(args) -> int:
    result = evaluate(args.run, args.data, progress=not args.no_progress)
    written = " and ".join(result.get("written", [])) or "nothing"
    show(args, result, results_table(result) + f"\nscored {result['checkpoint']} on {result['data']}; wrote {written}")
    return 0


def cmd_teacher_logits(args) -> int:
    out = precompute_teacher_logits(args.teachers, args.out, args.data, args.split, args.batch_size,
                                    progress=not args.no_progress)
    print(f"wrote teacher logits to {out}")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "teacher-logits": cmd_teacher_logits}
