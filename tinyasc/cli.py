"""The ``tinyasc`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from tinyasc.deploy.commands import COMMANDS as DEPLOY_COMMANDS, add_parsers
from tinyasc.errors import TinyAscError

EPILOG = """examples:
  tinyasc train                                  train the DCASE 2024 baseline on the built-in synthetic set
  tinyasc train --data /data/TAU-urban-acoustic-scenes-2022-mobile-development --split 25 --out runs/s25
  tinyasc train --config configs/dcase24_baseline.yaml --epochs 2 --set optim.lr=0.002
  tinyasc evaluate runs/s25                       metrics, per class and device, confusion matrix
  tinyasc predict runs/s25/checkpoints/best.ckpt clip.wav
  tinyasc complexity --model dcase24_baseline --precision fp16
"""


def _add_train(sub):
    p = sub.add_parser("train", help="train a model (default: DCASE 2024 baseline on the synthetic set)",
                       description="Train a scene classifier with PyTorch Lightning, then evaluate it on the test "
                                   "set. Without --data, the built-in synthetic dataset is generated once, cached, "
                                   "and trained on with a quick profile of a few epochs.")
    p.add_argument("--config", help="YAML config (see configs/); flags below override it")
    p.add_argument("--model", help="model name from `tinyasc models`")
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
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyasc", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="tinyasc: low-complexity acoustic scene classification (DCASE Task 1). Train, evaluate and "
                    "measure models small enough for a phone or a microcontroller.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_train(sub)

    p = sub.add_parser("evaluate", help="evaluate a run or checkpoint on its test set",
                       description="Accuracy, macro class-wise accuracy, log loss, per class and per device "
                                   "(seen/unseen for TAU devices); writes metrics.json and confusion_matrix.png "
                                   "into the run folder.")
    p.add_argument("run", help="run folder or checkpoint file")
    p.add_argument("--data", help="dataset folder (default: the one the run was trained on)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("predict", help="scene label and class probabilities for audio files")
    p.add_argument("checkpoint", help="run folder, checkpoint, or a quantized/pruned/ensemble model file")
    p.add_argument("files", nargs="+", help="audio files (wav/flac, any rate and channel count)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("synth", help="write the synthetic scene dataset in TAU layout")
    p.add_argument("out", help="output folder (must not exist)")
    p.add_argument("--clips", type=int, help="number of 1 s clips (default: the built-in size)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("complexity", help="parameters, bytes and MACs of a model, against the DCASE limits",
                       description="DCASE counting (torchinfo, as NeSsi): parameters, parameter bytes at a "
                                   "precision, MACs for a 1 s clip; limits 128,000 bytes and 30,000,000 MACs.")
    p.add_argument("--model", required=True)
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("models", help="list every registered model with its measured and reported complexity")
    p.add_argument("--json", action="store_true")
    add_parsers(sub)
    return parser


def cmd_train(args) -> int:
    from tinyasc import config as cfgmod
    from tinyasc.training.run import train

    if args.resume and not args.out:
        raise TinyAscError("--resume needs --out RUN_FOLDER (the run to continue)")
    if args.seeds < 1 or (args.seeds > 1 and args.resume):
        raise TinyAscError(f"--seeds {args.seeds}: give N >= 1, and resume one seed's run with --out RUN/seed<k>")
    base, first = None, []
    if args.resume:
        base = cfgmod.merge(cfgmod.DEFAULTS, cfgmod.load_yaml(Path(args.out) / "config.yaml"))
    elif not args.config and not args.data:
        first.append(cfgmod.QUICKSTART)
    config = cfgmod.resolve(None if args.resume else args.config, first, base=base)
    if args.model:  # a model brings its report's front end; --set can still change any of it
        from tinyasc.models import get_spec

        config["model"] = {"name": args.model, "args": {}}
        config["frontend"] = cfgmod.merge(cfgmod.DEFAULTS["frontend"], get_spec(args.model).frontend)
    flags = {"data.dir": args.data, "data.split": args.split, "trainer.epochs": args.epochs,
             "trainer.batch_size": args.batch_size, "seed": args.seed, "trainer.devices": args.devices,
             "data.skip_bad_files": True if args.skip_bad_files else None}
    overrides = [cfgmod.parse_override(f"{key}={value}") for key, value in flags.items() if value is not None]
    overrides += [cfgmod.parse_override(o) for o in args.overrides]
    config = cfgmod.resolve(None, overrides, base=config)
    out = Path(args.out or f"runs/{config['model']['name']}-{datetime.now():%Y%m%d-%H%M%S}")
    if args.seeds > 1:
        return train_seeds(config, out, args.seeds, progress=not args.no_progress)
    result = train(config, out, resume=args.resume, progress=not args.no_progress)
    if result:
        print(results_table(result, out))
    return 0


def train_seeds(config: dict, out: Path, n_seeds: int, progress: bool = True) -> int:
    """One run per seed in out/seed<k>, then mean and std (over seeds) of the test metrics in out/seeds.json."""
    import numpy as np

    from tinyasc.training.run import train, write_json

    seeds = [config["seed"] + k for k in range(n_seeds)]
    results = [train(dict(config, seed=seed), out / f"seed{seed}", progress=progress) for seed in seeds]
    if not all(results):
        return 0  # not the main process of a multi-device run
    metrics = {"macro_accuracy": [r["macro_accuracy"] for r in results], "accuracy": [r["accuracy"] for r in results],
               "log_loss": [r["log_loss"] for r in results]}
    for group in results[0].get("device_groups", {}):
        metrics[f"macro_accuracy_{group}"] = [r["device_groups"][group]["macro_accuracy"] for r in results]
    summary = {name: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "runs": v}
               for name, v in metrics.items()}
    write_json({"seeds": seeds, **summary}, out / "seeds.json")
    print(f"\nMean and standard deviation over seeds {', '.join(map(str, seeds))} ({out}/seeds.json)")
    for name, s in summary.items():
        fmt = "{:.3f}" if name == "log_loss" else "{:.2%}"
        print(f"{name:<28} {fmt.format(s['mean']):>9} +- {fmt.format(s['std'])}")
    return 0


def results_table(result: dict, run_dir: Path | None = None) -> str:
    c = result["complexity"]
    rows = [("macro class-wise accuracy", f"{result['macro_accuracy']:.2%}"),
            ("accuracy", f"{result['accuracy']:.2%}"), ("log loss", f"{result['log_loss']:.3f}")]
    for group, m in result.get("device_groups", {}).items():
        rows.append((f"macro accuracy, {group} devices", f"{m['macro_accuracy']:.2%}"))
    rows += [("test clips", str(result["n"])), ("parameters", f"{c['params']:,}"), ("MACs per 1 s", f"{c['macs']:,}"),
             (f"bytes ({c['precision']})", f"{c['bytes']:,}"), ("fits DCASE limits", "yes" if c["fits"] else "no")]
    if "train_seconds" in result:
        rows.append(("training time", f"{result['train_seconds']:.0f} s"))
    if result.get("left_out_files"):
        rows.append(("files left out (left_out.csv)", f"{result['left_out_files']:,}"))
    width = max(len(k) for k, _ in rows)
    lines = ["", "Results" + (f" ({run_dir})" if run_dir else ""), "-" * (width + 16)]
    lines += [f"{k:<{width}}  {v:>12}" for k, v in rows]
    lines.append("per device: " + "  ".join(f"{d} {m['accuracy']:.0%}" for d, m in result["per_device"].items()))
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    from tinyasc.evaluation.evaluate import evaluate

    result = evaluate(args.run, args.data, progress=not args.no_progress)
    print(json.dumps(result, indent=2) if args.json else results_table(result))
    return 0


def cmd_predict(args) -> int:
    from tinyasc.deploy.loading import load_predictor
    from tinyasc.deploy.predict import predict_files

    results = predict_files(load_predictor(args.checkpoint), args.files)  # checkpoints, compressed files, ensembles
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
            print(f"{r['file']}\t{r['scene_label']}\t" + "  ".join(f"{c} {p:.2f}" for c, p in top))
    return 0


def cmd_synth(args) -> int:
    from tinyasc.data import synthetic

    if Path(args.out).exists():
        raise TinyAscError(f"{args.out}: already exists; choose a new folder")
    out = synthetic.synthesize(args.out, n_clips=args.clips or synthetic.DEFAULT_CLIPS, seed=args.seed, progress=True)
    print(f"wrote synthetic TAU-layout dataset to {out}")
    return 0


def cmd_complexity(args) -> int:
    from tinyasc.audio.features import MelFrontEnd
    from tinyasc.complexity import measure, model_input_shape
    from tinyasc.config import DEFAULTS
    from tinyasc.models import create_model, get_spec

    spec = get_spec(args.model)
    shape = (1, *spec.input_shape)
    if spec.frontend:  # measure the shape through the model's own front end
        shape = model_input_shape(MelFrontEnd(**{**DEFAULTS["frontend"], **spec.frontend}), 1.0)
    c = measure(create_model(args.model, in_channels=shape[1]), shape, args.precision)
    if args.json:
        print(json.dumps({"model": args.model, **c.to_dict()}))
    else:
        print(f"model          {args.model}\ninput          {tuple(c.input_shape)}\nparameters     {c.params:,}\n"
              f"bytes ({c.precision})   {c.bytes:,}  (limit 128,000: {'ok' if c.fits_bytes else 'over'})\n"
              f"MACs per 1 s   {c.macs:,}  (limit 30,000,000: {'ok' if c.fits_macs else 'over'})\n"
              f"fits DCASE     {'yes' if c.fits else 'no'}")
    return 0


def cmd_models(args) -> int:
    from tinyasc.models.table import model_table, format_table

    rows = model_table()
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "synth": cmd_synth,
            "complexity": cmd_complexity, "models": cmd_models, **DEPLOY_COMMANDS}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TinyAscError as exc:
        print(f"tinyasc: error: {exc}", file=sys.stderr)
        for line in exc.details[:200]:
            print(f"  {line}", file=sys.stderr)
        if len(exc.details) > 200:
            print(f"  ... and {len(exc.details) - 200} more", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinyasc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
