"""Device robustness study on tinyasc's synthetic dataset.

Part 1: the DCASE 2024 baseline trained (a) without device augmentation, (b) with device impulse
response (DIR) augmentation, (c) with Freq-MixStyle, (d) with both; macro class-wise accuracy on
the test clips of devices seen in training (a, b, c, s1-s3) and of unseen ones (s4-s6).
Part 2: a small student (the baseline at half width) trained with and without knowledge
distillation from a larger teacher (CP-Mobile, 127 k params), whose logits are precomputed once.

Every number is a mean (and standard deviation) over seeds; each run is an ordinary
``tinyasc.experiment.train`` run folder under --out, and a run already finished there is reused,
so an interrupted study continues where it stopped. See studies/README.md for the measured table.

    python studies/device_robustness.py --out runs/device_robustness
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tinyasc import config as cfgmod
from tinyasc.data import synthetic
from tinyasc.training.distill import precompute_teacher_logits
from tinyasc.experiment import train

# A smaller input than the baseline's 256 x 65 (64 mels, 64 ms window, 31 ms hop: 64 x 33), so that
# the 20-odd runs fit a shared two-core CPU; sample rate, mel scale and log are the baseline's.
FRONTEND = {"n_fft": 2048, "win_length": 2048, "hop_length": 1000, "n_mels": 64}
NO_DEVICE_AUGMENTATION = [{"name": "time_roll", "max_shift_s": 0.1}]
DIR = {"name": "dir", "p": 0.6, "devices": ["a"]}  # as the CP-JKU recipe: device-A clips only
FMS = {"name": "freq_mixstyle", "p": 0.4, "alpha": 0.3}
MASK = {"name": "freq_mask", "width": 12}  # the baseline's 48 of 256 bins, scaled to 64
VARIANTS = {  # name: (waveform augmentations, spectrogram augmentations)
    "none": (NO_DEVICE_AUGMENTATION, [MASK]),
    "DIR": (NO_DEVICE_AUGMENTATION + [DIR], [MASK]),
    "Freq-MixStyle": (NO_DEVICE_AUGMENTATION, [FMS, MASK]),
    "DIR + Freq-MixStyle": (NO_DEVICE_AUGMENTATION + [DIR], [FMS, MASK]),
}
TEACHER = {"name": "cp_mobile", "args": {}}
STUDENT = {"name": "dcase24_baseline", "args": {"base_channels": 16}}
DISTILL = {"weight": 0.9, "temperature": 2.0}


def run_config(args, data_dir: Path, model: dict, waveform, spectrogram, seed: int, epochs: int, **extra) -> dict:
    irs = None if args.synthetic_irs else args.irs
    waveform = [dict(e, folder=irs) if e["name"] == "dir" else e for e in waveform]
    return cfgmod.resolve(None, [{
        "seed": seed,
        "data": {"dir": str(data_dir), "split": 100},
        "frontend": FRONTEND,
        "model": model,
        "augment": {"waveform": waveform, "spectrogram": spectrogram},
        "optim": {"name": "adamw", "lr": 0.005, "weight_decay": 1e-4},
        "schedule": {"name": "cosine_warmup", "warmup_steps": 100},
        "trainer": {"epochs": epochs, "batch_size": args.batch_size, "eval_batch_size": 256,
                    "accelerator": "cpu", "devices": 1},
    }, extra])


def run(config: dict, folder: Path) -> dict:
    """Train (or reuse a finished run in ``folder``) and return its test metrics."""
    if (folder / "metrics.json").is_file():
        return json.loads((folder / "metrics.json").read_text())
    if folder.exists():  # an interrupted run: start it again
        import shutil

        shutil.rmtree(folder)
    start = time.time()
    result = train(config, folder, progress=False)
    groups = result["device_groups"]
    print(f"  {folder.name}: macro acc {result['macro_accuracy']:.3f} seen {groups['seen']['macro_accuracy']:.3f} "
          f"unseen {groups['unseen']['macro_accuracy']:.3f} ({time.time() - start:.0f} s)", flush=True)
    return result


def summary(results: list[dict]) -> dict:
    values = {"all": [r["macro_accuracy"] for r in results],
              "seen": [r["device_groups"]["seen"]["macro_accuracy"] for r in results],
              "unseen": [r["device_groups"]["unseen"]["macro_accuracy"] for r in results]}
    for device in results[0]["per_device"]:
        values[device] = [r["per_device"][device]["macro_accuracy"] for r in results]
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "runs": v}
            for k, v in values.items()}


def table(rows: dict[str, dict]) -> str:
    lines = ["| training | macro acc, all | seen devices | unseen devices |", "|---|---|---|---|"]
    for name, s in rows.items():
        cells = [f"{100 * s[k]['mean']:.1f} ± {100 * s[k]['std']:.1f}" for k in ("all", "seen", "unseen")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def device_table(rows: dict[str, dict]) -> str:
    """Mean macro accuracy per test device (60-70 clips each, so single cells are noisy)."""
    devices = [k for k in next(iter(rows.values())) if k not in ("all", "seen", "unseen")]
    lines = ["| training | " + " | ".join(devices) + " |", "|---|" + "---|" * len(devices)]
    for name, s in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * s[d]['mean']:.0f}" for d in devices) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/device_robustness")
    p.add_argument("--clips", type=int, default=2400, help="synthetic clips (train + test)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--teacher-epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--irs", default=str(Path(__file__).resolve().parents[2] / "shared" / "dirs"),
                   help="impulse-response folder for DIR (default: the MicIRP copy beside the project)")
    p.add_argument("--synthetic-irs", action="store_true", help="DIR with tinyasc's synthetic responses instead")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy shared CPU)")
    p.add_argument("--skip-distillation", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.synthetic_irs and not Path(args.irs).is_dir():
        p.error(f"--irs {args.irs}: no such folder (point it at the MicIRP responses, or use --synthetic-irs)")
    out = Path(args.out)
    data_dir = out / f"synthetic-{args.clips}"
    if not (data_dir / "meta.csv").is_file():
        print(f"generating {args.clips} synthetic clips in {data_dir}", flush=True)
        synthetic.synthesize(data_dir, n_clips=args.clips, seed=0)
    seeds = list(range(args.seeds))
    start = time.time()
    rows: dict[str, dict] = {}
    for name, (waveform, spectrogram) in VARIANTS.items():
        print(f"baseline, {name}", flush=True)
        folder = out / "baseline" / name.replace(" + ", "+").replace(" ", "_")
        rows[f"baseline, {name}"] = summary([
            run(run_config(args, data_dir, {"name": "dcase24_baseline", "args": {}}, waveform, spectrogram, s,
                           args.epochs), folder / f"seed{s}") for s in seeds])
    if not args.skip_distillation:
        waveform, spectrogram = VARIANTS["DIR + Freq-MixStyle"]
        print("teacher (CP-Mobile)", flush=True)
        teacher_dir = out / "teacher"
        rows["teacher CP-Mobile (1 run)"] = summary([
            run(run_config(args, data_dir, TEACHER, waveform, spectrogram, 0, args.teacher_epochs), teacher_dir)])
        logits = out / "teacher_logits.npz"
        if not logits.is_file():
            precompute_teacher_logits([str(teacher_dir)], logits, progress=False)
        for label, loss in (("student, no distillation", {}),
                            ("student, distilled", {"loss": {"distill": dict(DISTILL, logits=str(logits))}})):
            print(label, flush=True)
            folder = out / ("student_kd" if loss else "student")
            rows[label] = summary([run(run_config(args, data_dir, STUDENT, waveform, spectrogram, s, args.epochs,
                                                  **loss), folder / f"seed{s}") for s in seeds])
    (out / "results.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"\n{table(rows)}\n\n{device_table(rows)}\n\n{len(seeds)} seeds, {time.time() - start:.0f} s; "
          f"results in {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
