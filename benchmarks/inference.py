"""Inference throughput and the accuracy cost of each compression step, DCASE 2024 baseline, this CPU.

    python benchmarks/inference.py [--clips 7000] [--epochs 6] [--qat-epochs 2] [--batch 64]
                                   [--threads N] [--out runs/bench-inference] [--run RUN]

1. Trains dcase24_baseline on the built-in synthetic set (quick profile), or reuses ``--run``.
2. Compresses it: post-training int8, QAT int8, fp16, pruning, pruning + int8; exports float and
   int8 ONNX and checks them against PyTorch.
3. Scores every variant on the same test clips: macro class-wise accuracy, change against the
   float model, log loss, and DCASE complexity.
4. Measures network throughput (log-mel features in, logits out, clips/s) of PyTorch fp32, fp16 and
   int8 and of ONNX Runtime fp32 and int8 side by side: rounds interleave the engines and the median
   round is reported, so load from other processes hits every engine alike. The front end's own
   throughput is measured too, for the end-to-end figure.

Prints markdown tables and writes results.json into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train_baseline(out: Path, clips: int, epochs: int, progress: bool) -> Path:
    from tinyasc import config as cfgmod
    from tinyasc.experiment import train

    from tinyasc.data import synthetic

    run, data = out / "run", out / f"synthetic-{clips}"
    if (run / "metrics.json").is_file():
        return run
    if not (data / "meta.csv").is_file():
        synthetic.synthesize(data, n_clips=clips, seed=0, progress=progress)
    config = cfgmod.resolve(None, [cfgmod.QUICKSTART, {"data": {"dir": str(data)}, "trainer": {"epochs": epochs}}])
    train(config, run, progress=progress)
    return run


def score(predictor, dm) -> dict:
    from tinyasc.evaluation.evaluate import evaluate_predictor

    m = evaluate_predictor(predictor, dm, "test")
    return {"macro_accuracy": m["macro_accuracy"], "log_loss": m["log_loss"], "complexity": predictor.complexity()}


def compress_all(run: Path, out: Path, qat_epochs: int, progress: bool) -> tuple[dict, dict]:
    """Every compression step of the run; returns (accuracy rows, model files)."""
    from tinyasc.compress.prune import prune_model
    from tinyasc.compress.quantize import quantize_model
    from tinyasc.data.build import datamodule_for
    from tinyasc.modelfile import load_predictor
    from tinyasc.deploy.onnx_export import OnnxPredictor, check_onnx, export_onnx

    files = {"float fp32": run, "post-training int8": out / "ptq.pt", "QAT int8": out / "qat.pt",
             "fp16": out / "fp16.pt", "pruned fp32": out / "pruned.pt", "pruned + post-training int8": out / "pruned-ptq.pt"}
    quantize_model(run, "ptq", out=files["post-training int8"], progress=progress)
    quantize_model(run, "qat", out=files["QAT int8"], epochs=qat_epochs, progress=progress)
    quantize_model(run, "fp16", out=files["fp16"], progress=progress)
    prune_model(run, ratio=0.25, steps=2, finetune_epochs=1, out=files["pruned fp32"], progress=progress)
    quantize_model(files["pruned fp32"], "ptq", out=files["pruned + post-training int8"], progress=progress)
    float_pred = load_predictor(run)
    dm = datamodule_for(float_pred.config, stage="test")
    rows = {name: score(load_predictor(path), dm) for name, path in files.items()}
    for name, source in (("ONNX Runtime fp32", "float fp32"), ("ONNX Runtime int8", "QAT int8")):
        pred = load_predictor(files[source])
        onnx_path = export_onnx(pred, out / f"{source.split()[0].lower()}.onnx")
        files[name] = onnx_path
        onnx_pred = OnnxPredictor(pred, onnx_path)
        rows[name] = {**score(onnx_pred, dm), "check": check_onnx(pred, onnx_pred, dm.test_dataloader())}
    return rows, files


def throughput(engines: dict, feats: torch.Tensor, rounds: int, repeat: int) -> dict:
    """Median clips/s per engine over interleaved rounds."""
    rates = {name: [] for name in engines}
    for fn in engines.values():
        fn(feats)  # warm-up: kernel selection, weight packing
    for _ in range(rounds):
        for name, fn in engines.items():
            start = time.perf_counter()
            for _ in range(repeat):
                fn(feats)
            rates[name].append(repeat * len(feats) / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def measure_speed(files: dict, batch: int, threads: int, rounds: int, repeat: int) -> dict:
    from tinyasc.modelfile import load_predictor
    from tinyasc.deploy.onnx_export import OnnxPredictor

    f32, i8 = load_predictor(files["float fp32"]), load_predictor(files["QAT int8"])
    f16 = load_predictor(files["fp16"])
    waves = torch.randn(batch, int(f32.sample_rate * f32.duration)) * 0.1
    feats = f32.features(waves).clone()
    nchw = f32.network.to(memory_format=torch.contiguous_format)

    def fp32_nchw(x):
        with torch.inference_mode():
            return nchw(x)

    engines = {"PyTorch fp32 (NCHW)": fp32_nchw, "PyTorch fp32 (channels-last)": f32.logits_from_features,
               "PyTorch fp16": f16.logits_from_features, "PyTorch int8 (x86)": i8.logits_from_features,
               "ONNX Runtime fp32": OnnxPredictor(f32, files["ONNX Runtime fp32"], threads).logits_from_features,
               "ONNX Runtime int8": OnnxPredictor(i8, files["ONNX Runtime int8"], threads).logits_from_features}
    speed = throughput(engines, feats, rounds, repeat)
    f32.network.to(memory_format=torch.channels_last)
    front = throughput({"front end": f32.features}, waves, rounds, repeat)["front end"]
    return {"network": speed, "front_end": front, "batch": batch, "threads": threads}


def markdown(rows: dict, speed: dict) -> str:
    base = rows["float fp32"]["macro_accuracy"]
    lines = ["| model | precision | parameters | parameter bytes | MACs | macro accuracy | change | log loss |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        c = r["complexity"]
        lines.append(f"| {name} | {c['precision']} | {c['params']:,} | {c['bytes']:,} | {c['macs']:,} | "
                     f"{100 * r['macro_accuracy']:.2f} % | {100 * (r['macro_accuracy'] - base):+.2f} | "
                     f"{r['log_loss']:.3f} |")
    net, fe = speed["network"], speed["front_end"]
    ref = net["PyTorch fp32 (channels-last)"]
    lines += ["", f"Network throughput, batch {speed['batch']}, {speed['threads']} threads "
                  f"(front end alone: {fe:,.0f} clips/s):", "",
              "| engine | clips/s | vs PyTorch fp32 (channels-last) | with front end, clips/s |",
              "|---|---:|---:|---:|"]
    for name, rate in net.items():
        lines.append(f"| {name} | {rate:,.0f} | {rate / ref:.2f}x | {1 / (1 / rate + 1 / fe):,.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=7000, help="synthetic clips (default 7000)")
    ap.add_argument("--epochs", type=int, default=6, help="training epochs of the float model")
    ap.add_argument("--qat-epochs", type=int, default=2, help="QAT fine-tuning epochs (report 001 uses 24)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="runs/bench-inference")
    ap.add_argument("--run", help="reuse this trained dcase24_baseline run instead of training one")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    run = Path(args.run) if args.run else train_baseline(out, args.clips, args.epochs, progress)
    rows, files = compress_all(run, out, args.qat_epochs, progress)
    speed = measure_speed(files, args.batch, args.threads, args.rounds, args.repeat)
    table = markdown(rows, speed)
    print(table)
    (out / "results.json").write_text(json.dumps({"accuracy": rows, "speed": speed, "table": table}, indent=2,
                                                 default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
