"""Command-line subcommands for compression and deployment.

``add_parsers(subparsers)`` adds them to the ``tinyasc`` parser; ``COMMANDS`` maps each name to
its handler (``args -> exit status``). Handlers raise TinyAscError for anything a user got wrong.
"""
from __future__ import annotations

import json
from pathlib import Path

from tinyasc.errors import TinyAscError


def _common(p, data=True):
    if data:
        p.add_argument("--data", help="dataset folder (default: the one the model was trained on)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_parsers(sub) -> None:
    p = sub.add_parser("quantize", help="int8 (QAT or post-training) or fp16 copy of a trained model, evaluated",
                       description="Quantise a trained float model and compare it with the float model on the "
                                   "same test clips. qat: fine-tune with fake int8 (report 001: 24 epochs, LR 5e-5 "
                                   "falling linearly to 10% by epoch 16); ptq: calibrate on training clips; fp16: "
                                   "half precision. Conv+BN(+ReLU) are fused, weights int8 per channel (x86 "
                                   "backend); layers without int8 kernels (GRN) stay float and are listed.")
    p.add_argument("model", help="run folder, checkpoint or float tinyasc model file (e.g. a pruned one)")
    p.add_argument("--mode", required=True, choices=["qat", "ptq", "fp16"])
    p.add_argument("--epochs", type=int, help="QAT epochs (default 24)")
    p.add_argument("--lr", type=float, help="QAT peak learning rate (default 5e-5)")
    p.add_argument("--calib-batches", type=int, default=32, help="PTQ calibration batches of training clips")
    p.add_argument("--out", help="output model file (default RUN/compressed/<name>-<mode>.pt)")
    _common(p)

    p = sub.add_parser("prune", help="iterative L1 filter pruning with fine-tuning: a narrower dense network",
                       description="Remove the filters with the smallest L1 norm from every prunable channel "
                                   "group (residual and depthwise couplings respected), in --steps steps with "
                                   "fine-tuning after each; writes the pruned model and a plot of accuracy and "
                                   "parameters against pruning rate.")
    p.add_argument("model", help="run folder, checkpoint or float tinyasc model file")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-params", type=int, help="prune until at most this many parameters remain")
    target.add_argument("--ratio", type=float, help="final fraction of filters removed per group, e.g. 0.5")
    p.add_argument("--steps", type=int, default=3, help="pruning steps (default 3)")
    p.add_argument("--finetune-epochs", type=int, default=2, help="epochs of fine-tuning after each step")
    p.add_argument("--lr", type=float, help="fine-tuning learning rate (default: a tenth of the run's)")
    p.add_argument("--out", help="output model file (default RUN/compressed/<name>-pruned.pt)")
    _common(p)

    p = sub.add_parser("ensemble", help="weighted logit average or fitted linear combination of models",
                       description="Combine models' logits: weights normalised to sum 1 (report 001: 0.5 0.5 or "
                                   "0.6 0.4), or --fit-linear: one weight per model and a bias per class fitted "
                                   "on clips every member held out for validation (report 003). Evaluated like "
                                   "one model; its complexity is the sum of the members'.")
    p.add_argument("models", nargs="+", help="run folders, checkpoints or tinyasc model files")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per model (default equal)")
    p.add_argument("--fit-linear", action="store_true", help="fit weights and bias on held-out clips")
    p.add_argument("--out", help="output ensemble file (default <first run>/compressed/ensemble.pt)")
    _common(p)

    p = sub.add_parser("export", help="ONNX export of a float or int8 model, checked with ONNX Runtime",
                       description="Export the network (log-mel features in, logits out) to ONNX and compare "
                                   "ONNX Runtime with PyTorch on the test clips: float logits within 1e-4 x "
                                   "max(1, |logit|), int8 within 3 more output quantisation steps, same predictions "
                                   "except on near ties.")
    p.add_argument("model", help="run folder, checkpoint or tinyasc model file")
    p.add_argument("--out", help="ONNX file (default RUN/compressed/<name>.onnx)")
    p.add_argument("--no-check", action="store_true", help="skip the comparison on the test set")
    _common(p)

    p = sub.add_parser("timeline", help="per-second scene labels of a long recording: CSV and PNG",
                       description="Classify consecutive clip-length windows of an audio file; optional moving "
                                   "average of the probabilities over --smooth windows.")
    p.add_argument("model", help="run folder, checkpoint or tinyasc model file")
    p.add_argument("file", help="audio file of any length")
    p.add_argument("--smooth", type=int, default=1, help="odd number of windows to average (default 1: none)")
    p.add_argument("--out-dir", default=".", help="folder for <file>.timeline.csv and .png (default .)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("submit", help="DCASE 2024 submission files: outputs per split and meta YAML",
                       description="One model per training split (read from each model's config). Writes "
                                   "<label>.output.split_<N>.csv and <label>.meta.yaml with complexity and "
                                   "development results overall, class-wise and device-wise.")
    p.add_argument("models", nargs="+", help="one run folder / model file per split")
    p.add_argument("--label", required=True, help="submission label, e.g. Lastname_Inst_task1_1")
    p.add_argument("--out", default="submission", help="output folder (default ./submission)")
    p.add_argument("--eval-data", help="evaluation set folder to predict (default: the development test set)")
    p.add_argument("--name", help="system name for the meta file")
    p.add_argument("--author", action="append", default=[], help="'Firstname Lastname <email>' (repeatable)")
    _common(p)


def _pct(v) -> str:
    return f"{100 * v:.2f} %"


def comparison_table(columns: dict[str, dict]) -> str:
    """Metrics and complexity of several models side by side."""
    rows = [("macro class-wise accuracy", lambda r: _pct(r["macro_accuracy"])),
            ("accuracy", lambda r: _pct(r["accuracy"])), ("log loss", lambda r: f"{r['log_loss']:.4f}"),
            ("parameters", lambda r: f"{r['complexity']['params']:,}"),
            ("parameter bytes", lambda r: f"{r['complexity']['bytes']:,}"),
            ("MACs per clip", lambda r: f"{r['complexity']['macs']:,}"),
            ("precision", lambda r: r["complexity"]["precision"]),
            ("fits DCASE limits", lambda r: "yes" if r["complexity"]["fits"] else "no")]
    names = list(columns)
    width = [max(len(n), 14) for n in names]
    lines = [f"{'':<26}" + "".join(f"{n:>{w + 2}}" for n, w in zip(names, width))]
    for label, fmt in rows:
        lines.append(f"{label:<26}" + "".join(f"{fmt(columns[n]):>{w + 2}}" for n, w in zip(names, width)))
    return "\n".join(lines)


def _print(args, info: dict, text: str) -> None:
    print(json.dumps(info, indent=2, default=float) if args.json else text)


def cmd_quantize(args) -> int:
    from tinyasc.compress.quantize_run import quantize_model

    info = quantize_model(args.model, args.mode, args.out, args.data, args.epochs, args.lr, args.calib_batches,
                          progress=not args.no_progress)
    text = comparison_table({"float": info["float"], args.mode: info["compressed"]})
    text += f"\nsame prediction on {info['prediction_agreement']:.1%} of test clips"
    if info["float_in_int8"]:
        text += "\nkept in float (no int8 kernel): " + ", ".join(info["float_in_int8"])
    _print(args, info, f"{text}\nwrote {info['output']}")
    return 0


def cmd_prune(args) -> int:
    from tinyasc.compress.prune import prune_model

    info = prune_model(args.model, args.ratio, args.target_params, args.steps, args.finetune_epochs, args.lr,
                       args.out, args.data, progress=not args.no_progress)
    steps = "\n".join(f"  rate {h['rate']:5.1%}: {h['params']:>8,} params {h['macs']:>12,} MACs  "
                      f"{info['history_stage']} macro accuracy {h['macro_accuracy']:.2%}" for h in info["history"])
    text = comparison_table({"original": info["float"], "pruned": info["compressed"]})
    _print(args, info, f"{steps}\n{text}\nwrote {info['output']} and {info['plot']}")
    return 0


def cmd_ensemble(args) -> int:
    from tinyasc.compress import artifact
    from tinyasc.deploy.ensemble import Ensemble, average_weights, fit_linear, heldout_clips
    from tinyasc.deploy.inference import datamodule_for, evaluate_predictor, summary
    from tinyasc.deploy.loading import load_predictor, run_dir_of

    if len(args.models) < 2:
        raise TinyAscError("ensemble: give at least two models")
    if args.fit_linear and args.weights:
        raise TinyAscError("ensemble: --weights and --fit-linear exclude each other")
    members = [load_predictor(m) for m in args.models]
    progress = not args.no_progress
    fit = {}
    if args.fit_linear:
        import numpy as np

        probe = Ensemble(members, [1.0] * len(members))  # checks classes and clip format first
        _, loader = heldout_clips(members, args.data, progress)
        logits, labels = [], []
        for waves, y, *_ in loader:
            logits.append(probe.member_logits(waves.float()).numpy())
            labels.append(y.numpy())
        weights, bias = fit_linear(np.concatenate(logits, axis=1), np.concatenate(labels))
        ensemble = Ensemble(members, weights, bias, "linear")
        fit = {"clips": int(sum(len(y) for y in labels))}
    else:
        ensemble = Ensemble(members, average_weights(args.weights, len(members)), None, "average")
    out = Path(args.out) if args.out else run_dir_of(args.models[0]) / "compressed" / "ensemble.pt"
    dm = datamodule_for(ensemble, args.data, "test", progress)
    columns = {}
    for i, m in enumerate(members):
        columns[f"model {i + 1}"] = {**summary(evaluate_predictor(m, dm, "test", progress)), "complexity": m.complexity()}
    columns["ensemble"] = {**summary(evaluate_predictor(ensemble, dm, "test", progress)),
                           "complexity": ensemble.complexity()}
    info = {"output": str(out), "method": ensemble.method, "weights": ensemble.weights.tolist(),
            "bias": None if ensemble.bias is None else ensemble.bias.tolist(), "fit": fit, "results": columns}
    artifact.save(out, ensemble.record, info)
    _print(args, info, f"{ensemble.describe()}\n{comparison_table(columns)}\nwrote {out}")
    return 0


def cmd_export(args) -> int:
    from tinyasc.deploy.inference import datamodule_for
    from tinyasc.deploy.loading import predictor_from_record, read_model_file, run_dir_of
    from tinyasc.deploy.onnx_export import OnnxPredictor, check_onnx, export_onnx

    record, _, file = read_model_file(args.model)
    predictor = predictor_from_record(record, str(file))
    out = export_onnx(predictor, args.out or run_dir_of(file) / "compressed" / f"{file.stem}.onnx")
    info = {"output": str(out), "bytes_on_disk": out.stat().st_size}
    text = f"wrote {out} ({out.stat().st_size:,} bytes)"
    if not args.no_check:
        dm = datamodule_for(predictor, args.data, "test", not args.no_progress)
        check = check_onnx(predictor, OnnxPredictor(predictor, out), dm.test_dataloader())
        info["check"] = check
        text += (f"\nONNX Runtime vs PyTorch on {check['clips']} test clips: max |logit difference| "
                 f"{check['max_abs_diff']:.3g} (tolerance {check['tolerance']:.3g}: {check['tolerance_rule']}), "
                 f"{check['prediction_mismatches']} differing predictions "
                 f"({check['decisive_mismatches']} outside near ties)")
        if not check["ok"]:
            _print(args, info, text)
            raise TinyAscError(f"{out}: ONNX Runtime disagrees with PyTorch beyond the tolerance")
    _print(args, info, text)
    return 0


def cmd_timeline(args) -> int:
    from tinyasc.deploy.loading import load_predictor
    from tinyasc.deploy.timeline import plot_timeline, scene_timeline, write_csv

    timeline = scene_timeline(load_predictor(args.model), args.file, smooth=args.smooth)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(args.file).stem
    csv_path = write_csv(timeline, out_dir / f"{stem}.timeline.csv")
    png_path = plot_timeline(timeline, out_dir / f"{stem}.timeline.png")
    info = {"file": args.file, "csv": str(csv_path), "png": str(png_path), "windows": len(timeline["labels"]),
            "labels": timeline["labels"]}
    segments, start = [], 0
    labels = timeline["labels"]
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            segments.append(f"{timeline['start'][start]:7.1f} s  {labels[start]} ({i - start} windows)")
            start = i
    _print(args, info, "\n".join(segments) + f"\nwrote {csv_path} and {png_path}")
    return 0


def cmd_submit(args) -> int:
    from tinyasc.deploy.submission import write_submission

    info = write_submission(args.models, args.label, args.out, args.eval_data, args.data, args.name, args.author,
                            progress=not args.no_progress)
    lines = [f"split {s.split('_')[1]:>3}: macro accuracy {r['overall']['accuracy']:.2f} %, log loss "
             f"{r['overall']['logloss']:.3f}" for s, r in info["results"].items()]
    lines.append(f"predictions on the {info['evaluated_on']}")
    lines += [f"wrote {p}" for p in info["outputs"].values()] + [f"wrote {info['meta']}"]
    _print(args, info, "\n".join(lines))
    return 0


COMMANDS = {"quantize": cmd_quantize, "prune": cmd_prune, "ensemble": cmd_ensemble, "export": cmd_export,
            "timeline": cmd_timeline, "submit": cmd_submit}
