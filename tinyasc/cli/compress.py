"""Commands that compress trained models: quantize, prune, ensemble."""
from __future__ import annotations

from tinyasc.cli.common import add_common, comparison_table, show
from tinyasc.compress.ensemble import build_ensemble
from tinyasc.compress.prune import prune_model
from tinyasc.compress.quantize import quantize_model


def add_parsers(sub) -> None:
    p = sub.add_parser("quantize", help="int8 (QAT or post-training) or fp16 copy of a trained model, evaluated",
                       description="Quantise a trained float model and compare it with the float model on the "
                                   "same test clips. qat: fine-tune with fake int8 (report 001: 24 epochs, LR 5e-5 "
                                   "falling linearly to 10% by epoch 16); ptq: calibrate on training clips; fp16: "
                                   "half precision. Conv+BN(+ReLU) are fused, weights int8 per channel (x86 "
                                   "backend); layers without int8 kernels (e.g. GRN) stay float and are listed.")
    p.add_argument("model", help="run folder, checkpoint or float tinyasc model file (e.g. a pruned one)")
    p.add_argument("--mode", choices=["qat", "ptq", "fp16"],
                   help="default: the run's compress.mode (the seed recipes name their report's)")
    p.add_argument("--epochs", type=int, help="QAT epochs (default: compress.qat_epochs, 24 as report 001)")
    p.add_argument("--lr", type=float, help="QAT peak learning rate (default: compress.qat_lr, 5e-5)")
    p.add_argument("--calib-batches", type=int,
                   help="PTQ calibration batches of training clips (default: compress.calib_batches, 32)")
    p.add_argument("--out", help="output model file (default RUN/compressed/<name>-<mode>.pt)")
    add_common(p)

    p = sub.add_parser("prune", help="iterative L1 filter pruning with fine-tuning: a narrower dense network",
                       description="Remove the filters with the smallest L1 norm from every prunable channel "
                                   "group (residual and depthwise couplings respected), in --steps steps with "
                                   "fine-tuning after each; writes the pruned model and a plot of accuracy and "
                                   "parameters against pruning rate.")
    p.add_argument("model", help="run folder, checkpoint or float tinyasc model file")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-params", type=int, help="prune until at most this many parameters remain "
                                                          "(default: the run's compress.prune_target_params)")
    target.add_argument("--ratio", type=float, help="final fraction of filters removed per group, e.g. 0.5 "
                                                    "(default: the run's compress.prune_ratio)")
    p.add_argument("--steps", type=int, help="pruning steps (default: compress.prune_steps, 3)")
    p.add_argument("--finetune-epochs", type=int,
                   help="epochs of fine-tuning after each step (default: compress.prune_finetune_epochs, 2)")
    p.add_argument("--lr", type=float, help="fine-tuning learning rate (default: compress.prune_lr, else a tenth "
                                            "of the run's)")
    p.add_argument("--filters-only", action="store_true", default=None,
                   help="prune conv filters only, as report 003 did (default: compress.prune_filters_only)")
    p.add_argument("--out", help="output model file (default RUN/compressed/<name>-pruned.pt)")
    add_common(p)

    p = sub.add_parser("ensemble", help="weighted logit average or fitted linear combination of models",
                       description="Combine models' logits: weights normalised to sum 1 (report 001: 0.5 0.5 or "
                                   "0.6 0.4), or --fit-linear: one weight per model and a bias per class fitted "
                                   "on clips every member held out for validation (report 003). Evaluated like "
                                   "one model; its complexity is the sum of the members'.")
    p.add_argument("models", nargs="+", help="run folders, checkpoints or tinyasc model files")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per model (default equal)")
    p.add_argument("--fit-linear", action="store_true", help="fit weights and bias on held-out clips")
    p.add_argument("--out", help="output ensemble file (default <first run>/compressed/ensemble.pt)")
    add_common(p)


def cmd_quantize(args) -> int:
    info = quantize_model(args.model, args.mode, args.out, args.data, args.epochs, args.lr, args.calib_batches,
                          progress=not args.no_progress)
    text = comparison_table({"float": info["float"], info["mode"]: info["compressed"]})
    text += f"\nsame prediction on {info['prediction_agreement']:.1%} of test clips"
    if info["float_in_int8"]:
        text += "\nkept in float (no int8 kernel): " + ", ".join(info["float_in_int8"])
    show(args, info, f"{text}\nwrote {info['output']}")
    return 0


def cmd_prune(args) -> int:
    info = prune_model(args.model, args.ratio, args.target_params, args.steps, args.finetune_epochs, args.lr,
                       args.out, args.data, progress=not args.no_progress, filters_only=args.filters_only)
    steps = "\n".join(f"  rate {h['rate']:5.1%}: {h['params']:>8,} params {h['macs']:>12,} MACs  "
                      f"{info['history_stage']} macro accuracy {h['macro_accuracy']:.2%}" for h in info["history"])
    text = comparison_table({"original": info["float"], "pruned": info["compressed"]})
    show(args, info, f"{steps}\n{text}\nwrote {info['output']} and {info['plot']}")
    return 0


def cmd_ensemble(args) -> int:
    info = build_ensemble(args.models, args.weights, args.fit_linear, args.out, args.data,
                          progress=not args.no_progress)
    show(args, info, f"{info['description']}\n{comparison_table(info['results'])}\nwrote {info['output']}")
    return 0


COMMANDS = {"quantize": cmd_quantize, "prune": cmd_prune, "ensemble": cmd_ensemble}
