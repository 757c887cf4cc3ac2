"""Training at the machine's speed: every optimisation switchable, measured side by side in one run.

    python benchmarks/training.py [--batch 256] [--steps 3] [--main-job]

Each configuration runs in a fresh process (malloc settings only apply to a process's later
allocations): ``TINYASC_NO_TUNE=1`` gives the default allocator. Prints
  1. the bare model step (ready log-mels -> fwd + bwd + AdamW) of the DCASE 2024 baseline:
     NCHW / channels-last, fp32 / bf16 autocast, default / tuned allocator;
  2. tinyasc's whole step (load, augment, front end, network, loss, optimiser) with today's path
     (default allocator, NCHW, one STFT + dense mel matmul) and each optimisation switched on in turn,
     and the share of each part of the step;
  3. the front end alone: tinyasc against a plain batched torch.stft + dense mel matmul;
  4. with --main-job, the wall time of ``tinyasc train`` (the main job) with a warm TINYASC_CACHE.
Rates are clips per second of wall time; user and system CPU seconds are shown per configuration.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch


def cpu_seconds() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def measure(step, clips: int, steps: int, after_warmup=lambda: None) -> dict:
    step()  # warm-up: first-call allocations and kernel choices
    after_warmup()
    (u0, s0), start = cpu_seconds(), time.perf_counter()
    for _ in range(steps):
        step()
    (u1, s1), wall = cpu_seconds(), time.perf_counter() - start
    return {"clips_s": clips * steps / wall, "user_s": u1 - u0, "sys_s": s1 - s0}


def dense_frontend(fe):
    """Today's front end before the blocked CPU path: one batched STFT, dense filterbank matmul."""
    def forward(wave, mel_fb=None):
        mel = torch.matmul(fe.mel_fb if mel_fb is None else mel_fb, fe.power_spectrogram(wave.float()))
        return torch.log(mel + fe.log_offset).unsqueeze(1)
    return forward


def bare(args) -> dict:
    from tinyasc.models import create_model

    model = create_model("dcase24_baseline", n_classes=10).train()
    x, y = torch.randn(args.batch, 1, 256, 65), torch.randint(0, 10, (args.batch,))
    if args.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return measure(step, args.batch, args.steps)


def whole(args) -> dict:
    from tinyasc import config as cfgmod
    from tinyasc.data.build import synthetic_dir
    from tinyasc.data.datamodule import SceneDataModule
    from tinyasc.training.module import SceneClassifier

    config = cfgmod.resolve(None, [{"trainer": {"batch_size": args.batch}}])
    dm = SceneDataModule(synthetic_dir(None, 0, False), batch_size=args.batch, val_fraction=0.0, progress=False)
    dm.setup("fit")
    module = SceneClassifier(config, dm.classes, dm.devices).train()
    module._memory_format(args.channels_last)
    if not args.blocked:
        module.frontend.forward = dense_frontend(module.frontend)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    parts = dict(load=0.0, augment=0.0, features=0.0, network=0.0)
    batches = iter([])

    def step():
        nonlocal batches
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            batches = iter(dm.train_dataloader())
            batch = next(batches)
        wave, labels, devices, _ = batch
        module.on_train_batch_start(batch, 0)  # the per-step reseeding
        t1 = time.perf_counter()
        wave, targets = module.wave_augment(wave, labels, devices)
        t2 = time.perf_counter()
        feats = module.frontend(wave, mel_fb=module.mel_augment.filterbank(module.frontend))
        t3 = time.perf_counter()
        feats, targets = module.spec_augment(feats, targets, devices)
        t4 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = module.loss_fn(module.network(feats), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t5 = time.perf_counter()
        for key, dt in zip(parts, (t1 - t0, t2 - t1 + t4 - t3, t3 - t2, t5 - t4)):
            parts[key] += dt
    out = measure(step, args.batch, args.steps, lambda: parts.update(dict.fromkeys(parts, 0.0)))
    total = sum(parts.values())
    return {**out, "shares": {k: v / total for k, v in parts.items()}}


def frontend(args) -> dict:
    from tinyasc.audio.features import MelFrontEnd

    fe = MelFrontEnd()
    waves = torch.randn(args.batch, 32000) * 0.1
    plain = dense_frontend(fe)
    out = {"tinyasc": [], "plain torch.stft + dense mel": []}
    for _ in range(args.steps + 1):  # alternated, best of the rounds after the first
        for name, fn in (("tinyasc", fe), ("plain torch.stft + dense mel", plain)):
            start = time.perf_counter()
            fn(waves)
            out[name].append(args.batch / (time.perf_counter() - start))
    return {name: max(rates[1:]) for name, rates in out.items()}


def child(part: str, tuned: bool, **flags) -> dict:
    argv = [sys.executable, __file__, "--part", part] + [f"--{k.replace('_', '-')}={int(v) if isinstance(v, bool) else v}"
                                                          for k, v in flags.items()]
    env = {**os.environ, "TINYASC_NO_TUNE": "" if tuned else "1"}
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--main-job", action="store_true", help="also time `tinyasc train` (warm cache)")
    parser.add_argument("--part", choices=("bare", "whole", "frontend"), help=argparse.SUPPRESS)
    for flag in ("channels-last", "bf16", "blocked"):
        parser.add_argument(f"--{flag}", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # one configuration, in its own process
        from tinyasc.base.runtime import tune_runtime
        tune_runtime()
        torch.set_num_threads(len(os.sched_getaffinity(0)))  # tuned or not: the same threads
        args.channels_last, args.bf16, args.blocked = bool(args.channels_last), bool(args.bf16), bool(args.blocked)
        print(json.dumps({"bare": bare, "whole": whole, "frontend": frontend}[args.part](args)))
        return 0
    common = dict(batch=args.batch, steps=args.steps)
    print(f"torch {torch.__version__}, {len(os.sched_getaffinity(0))} cores, batch {args.batch}, {args.steps} steps")
    rows = []
    for tuned in (False, True):
        for cl, bf16 in ((False, False), (True, False), (True, True)):
            r = child("bare", tuned, channels_last=cl, bf16=bf16, **common)
            rows.append((f"bare step, {'channels-last' if cl else 'NCHW'} {'bf16' if bf16 else 'fp32'}, "
                         f"{'tuned' if tuned else 'default'} allocator", r))
    bare_best = rows[4][1]["clips_s"]  # channels-last fp32, tuned
    steps = [("whole step, today's path (default allocator, NCHW, dense front end)", False, False, False),
             ("  + tuned allocator", True, False, False), ("  + channels-last", True, True, False),
             ("  + blocked front end (tinyasc now)", True, True, True)]
    shares = {}
    for name, tuned, cl, blocked in steps:
        r = child("whole", tuned, channels_last=cl, blocked=blocked, **common)
        rows.append((name, r))
        shares[name] = r["shares"]
    width = max(len(n) for n, _ in rows)
    print(f"\n{'measurement':<{width}}  {'clips/s':>8}  {'user s':>7}  {'sys s':>6}")
    for name, r in rows:
        print(f"{name:<{width}}  {r['clips_s']:>8.1f}  {r['user_s']:>7.1f}  {r['sys_s']:>6.1f}")
    today, now = rows[6][1]["clips_s"], rows[-1][1]["clips_s"]
    print(f"\ntinyasc's whole step: {now / bare_best:.0%} of the bare channels-last fp32 step (target >= 80 %), "
          f"{now / today:.1f}x today's default path (target >= 4x)")
    for name in (steps[0][0], steps[-1][0]):
        print(f"share of the step, {name.strip()}: " + ", ".join(f"{k} {v:.1%}" for k, v in shares[name].items()))
    fe = child("frontend", True, **common)
    print("\nfront end, batch {}: ".format(args.batch) + ", ".join(f"{k} {v:.0f} clips/s" for k, v in fe.items()))
    if args.main_job:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tinyasc.cli", "train", "--out", "/tmp/tinyasc-bench-main"], check=True,
                       capture_output=True)
        print(f"main job (tinyasc train, warm cache): {time.perf_counter() - start:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
