"""Training at the machine's speed: every optimisation switchable, measured side by side in one run.

    python benchmarks/training.py [--batch 256] [--steps 3] [--warmup 1] [--only PARTS] [--main-job]

Each configuration runs in a fresh process (malloc settings only apply to a process's later
allocations): ``TINYASC_NO_TUNE=1`` gives the default allocator. The parts (``--only`` picks some;
all by default), in the order they run:
  bare      the bare model step (ready log-mels -> fwd + bwd + AdamW) of the DCASE 2024 baseline:
            NCHW / channels-last, fp32 / bf16 autocast, default / tuned allocator;
  whole     tinyasc's whole step in a hand-written loop (load, augment, front end, network, loss,
            optimiser) with today's path (default allocator, NCHW, one STFT + dense mel matmul) and each
            optimisation switched on in turn, and the share of each part of the step;
  compile   torch.compile (inductor; each of --compile-modes): the bare channels-last fp32 step (tuned
            allocator) with the model compiled, and the whole step with the module's network compiled
            in place (``module.model.compile()``: the state-dict keys stay, so checkpoints do not change).
            Steady-state clips/s after the warm-up; the first call's seconds (compilation, with a cold
            inductor cache) in the note column. A compile error is a "failed: ..." row;
  lightning tinyasc's whole step run by ``Trainer.fit`` as tinyasc builds it (make_trainer, has_val=False,
            the synthetic data of the whole part), timed per step by a callback from the start of step k
            to the start of step k+1 (so what Lightning does between batches counts); variants: as
            shipped, self.log a no-op, logger writes off, per-step reseed off, deterministic=True,
            deterministic=False, progress bar on. Then the loop's overhead against the hand-written whole
            step of the same configuration and each variant's gain or cost against the shipped one;
  frontend  the front end alone: tinyasc against a plain batched torch.stft + dense mel matmul.
A part whose comparison needs a row of another part (compile, lightning) runs that configuration too.
With --main-job, the wall time of ``tinyasc train`` (the main job) with a warm TINYASC_CACHE.
Rates are clips per second of wall time; user and system CPU seconds are shown per configuration.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

PARTS = ("bare", "whole", "compile", "lightning", "frontend")
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
# Lightning variants: name -> row label. Each changes one thing against "shipped".
VARIANTS = {
    "shipped": "Lightning fit, as shipped (CSV+TB loggers, step log, reseed, determ. 'warn')",
    "no-log": "  self.log a no-op (module logs nothing)",
    "no-writes": "  logger writes off (log_every_n_steps past the run)",
    "no-reseed": "  per-step reseed off",
    "deterministic": "  deterministic=True",
    "nondeterministic": "  deterministic=False",
    "progress": "  progress bar on (RunProgressBar)",
}


# ---------------------------------------------------------------- measuring, inside a child process

def cpu_seconds() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def measure(step, clips: int, steps: int, warmup: int = 1, after_warmup=lambda: None) -> dict:
    start = time.perf_counter()
    step()  # warm-up: first-call allocations and kernel choices (with torch.compile: the compilation)
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        step()
    after_warmup()
    (u0, s0), start = cpu_seconds(), time.perf_counter()
    for _ in range(steps):
        step()
    (u1, s1), wall = cpu_seconds(), time.perf_counter() - start
    return {"clips_s": clips * steps / wall, "user_s": u1 - u0, "sys_s": s1 - s0, "first_s": first}


def measure_part(args, step, after_warmup=lambda: None) -> dict:
    """``measure`` with the command line's steps; a compiled step also reports its first call's seconds
    as the compile time, and is timed after at least 2 warm-up calls (the second shows a recompilation)."""
    warmup = max(args.warmup, 2) if args.compile else args.warmup
    out = measure(step, args.batch, args.steps, warmup, after_warmup)
    return {**out, "compile_s": out["first_s"]} if args.compile else out


def compile_mode(mode: str) -> str | None:
    return None if mode == "default" else mode


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
    net = torch.compile(model, mode=compile_mode(args.compile)) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return measure_part(args, step)


def synthetic_datamodule(batch: int):
    """The built-in synthetic set, all of it for training: what the whole and lightning parts feed on."""
    from tinyasc.data.build import synthetic_dir
    from tinyasc.data.datamodule import SceneDataModule

    dm = SceneDataModule(synthetic_dir(None, 0, False), batch_size=batch, val_fraction=0.0, progress=False)
    dm.setup("fit")
    return dm


def tinyasc_config(batch: int, **trainer) -> dict:
    from tinyasc import config as cfgmod

    return cfgmod.resolve(None, [{"trainer": {"batch_size": batch, **trainer}}])


def whole(args) -> dict:
    from tinyasc.training.module import SceneClassifier

    dm = synthetic_datamodule(args.batch)
    module = SceneClassifier(tinyasc_config(args.batch), dm.classes, dm.devices).train()
    module._memory_format(args.channels_last)
    if not args.blocked:
        module.frontend.forward = dense_frontend(module.frontend)
    if args.compile:  # in place, as the module itself would: module.model keeps its state-dict keys
        module.model.compile(mode=compile_mode(args.compile))
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
    out = measure_part(args, step, after_warmup=lambda: parts.update(dict.fromkeys(parts, 0.0)))
    total = sum(parts.values())
    return {**out, "shares": {k: v / total for k, v in parts.items()}}


def step_clock():
    """A callback that notes wall and CPU time at every training batch's start and end. Step k lasts
    from its start to step k+1's start, so it holds what Lightning does between batches too: fetching
    the next batch, the logger writes, the other callbacks' batch-end and batch-start hooks."""
    import lightning as L

    class StepClock(L.Callback):
        def __init__(self):
            self.starts, self.ends, self.cpu, self.writes = [], [], [], []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.cpu.append(cpu_seconds())
            self.starts.append(time.perf_counter())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.ends.append(time.perf_counter())
            # Whether the loggers get a row after this step (checked by Lightning right after this hook).
            self.writes.append(trainer._logger_connector.should_update_logs)

        def result(self, first: int, steps: int, batch: int) -> dict:
            last = first + steps
            wall = self.starts[last] - self.starts[first]
            (u0, s0), (u1, s1) = self.cpu[first], self.cpu[last]
            in_batch = sum(self.ends[k] - self.starts[k] for k in range(first, last))
            return {"clips_s": batch * steps / wall, "user_s": u1 - u0, "sys_s": s1 - s0,
                    "in_batch": in_batch / wall, "writes": sum(self.writes[first:last])}
    return StepClock()


def lightning(args) -> dict:
    import warnings

    import lightning as L

    from tinyasc import config as cfgmod
    from tinyasc.training.module import SceneClassifier
    from tinyasc.training.trainer import make_trainer, quiet_lightning

    quiet_lightning()
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")  # "no-writes" means it
    trainer_cfg = {"epochs": 1,  # the measured batches lie in one epoch: no epoch-end checkpoint among them
                   "log_every_n_steps": 10**9 if args.variant == "no-writes" else None,
                   "deterministic": {"deterministic": True, "nondeterministic": False}.get(args.variant)}
    config = tinyasc_config(args.batch, **{k: v for k, v in trainer_cfg.items() if v is not None})
    cfgmod.validate(config)
    if args.variant == "no-log":  # every self.log call: its bookkeeping, the logged rows, the bar's numbers
        SceneClassifier.log = lambda self, *a, **k: None
    if args.variant == "no-reseed":
        SceneClassifier.on_train_batch_start = lambda self, batch, batch_idx: None
    dm = synthetic_datamodule(args.batch)
    # One batch past the measured ones: it ends the last measured step's wall time.
    batches = args.warmup + args.steps + 1
    if len(dm.train_dataloader()) < batches:
        raise ValueError(f"the synthetic set has {len(dm.train_dataloader())} batches of {args.batch}, "
                         f"fewer than the {batches} the measurement needs")
    L.seed_everything(config["seed"], workers=True, verbose=False)  # as tinyasc.experiment.train does
    module = SceneClassifier(config, dm.classes, dm.devices)
    clock = step_clock()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = make_trainer(config, Path(run_dir), progress=args.variant == "progress", has_val=False)
        trainer.limit_train_batches = batches
        trainer.callbacks.append(clock)
        trainer.fit(module, datamodule=dm)
    return {**clock.result(args.warmup, args.steps, args.batch), "log_every": trainer.log_every_n_steps}


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


def one_line(error: BaseException) -> str:
    """An exception in one line: inductor's messages span pages (the command, the log), the first lines say why."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {' | '.join(lines[:3])}"[:300]


def run_part(args) -> int:
    """One configuration, in its own process; its result as one JSON line, or {"failed": why}."""
    from tinyasc.base.runtime import tune_runtime

    tune_runtime()
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # tuned or not: the same threads
    args.channels_last, args.bf16, args.blocked = bool(args.channels_last), bool(args.bf16), bool(args.blocked)
    part = {"bare": bare, "whole": whole, "lightning": lightning, "frontend": frontend}[args.part]
    try:
        result = part(args)
    except Exception as error:  # a row that says why, not a benchmark that stops (compile errors, determinism)
        traceback.print_exc()
        result = {"failed": one_line(error)}
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------- the parent: runs children, prints

def child(part: str, tuned: bool, env: dict | None = None, **flags) -> dict:
    argv = [sys.executable, __file__, "--part", part] + [f"--{k.replace('_', '-')}={int(v) if isinstance(v, bool) else v}"
                                                          for k, v in flags.items()]
    env = {**os.environ, "TINYASC_NO_TUNE": "" if tuned else "1", **(env or {})}
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    lines = out.stdout.splitlines()
    if out.returncode or not lines:  # killed, crashed in C++, out of memory: a failed row too
        why = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"failed": f"exit status {out.returncode}: {why}"[:300]}
    return json.loads(lines[-1])


class Runs:
    """Each configuration at most once, in its own process; the table's rows in the order they ran.
    ``get`` runs a configuration unless an earlier part already did (a comparison's reference row)."""

    def __init__(self, **common):
        self.common, self.rows, self.done = common, [], {}

    def get(self, label: str, part: str, tuned: bool = True, env: dict | None = None, **flags) -> dict:
        key = (part, tuned, tuple(sorted(flags.items())))
        if key not in self.done:
            self.done[key] = child(part, tuned, env, **self.common, **flags)
            self.rows.append((label, self.done[key]))
        return self.done[key]


def ok(*results) -> bool:
    return all(r is not None and "failed" not in r for r in results)


def bare_label(channels_last: bool, bf16: bool, tuned: bool) -> str:
    return (f"bare step, {'channels-last' if channels_last else 'NCHW'} {'bf16' if bf16 else 'fp32'}, "
            f"{'tuned' if tuned else 'default'} allocator")


WHOLE_STEPS = [("whole step, today's path (default allocator, NCHW, dense front end)", False, False, False),
               ("  + tuned allocator", True, False, False), ("  + channels-last", True, True, False),
               ("  + blocked front end (tinyasc now)", True, True, True)]


def bare_best(runs: Runs) -> dict:  # the reference of the whole step and of the compiled bare step
    return runs.get(bare_label(True, False, True), "bare", True, channels_last=True, bf16=False)


def whole_now(runs: Runs) -> dict:  # the reference of the compiled whole step and of the Lightning loop
    _, tuned, cl, blocked = WHOLE_STEPS[-1]  # the label when the whole part has not run it already
    return runs.get("whole step, tinyasc now (tuned allocator, channels-last, blocked front end)", "whole", tuned,
                    channels_last=cl, blocked=blocked)


def report_bare(runs: Runs, args) -> None:
    for tuned in (False, True):
        for cl, bf16 in ((False, False), (True, False), (True, True)):
            runs.get(bare_label(cl, bf16, tuned), "bare", tuned, channels_last=cl, bf16=bf16)


def report_whole(runs: Runs, args) -> list[str]:
    results = {name: runs.get(name, "whole", tuned, channels_last=cl, blocked=blocked)
               for name, tuned, cl, blocked in WHOLE_STEPS}
    today, now, best = results[WHOLE_STEPS[0][0]], results[WHOLE_STEPS[-1][0]], bare_best(runs)
    lines = []
    if ok(today, now, best):
        lines.append(f"tinyasc's whole step: {now['clips_s'] / best['clips_s']:.0%} of the bare channels-last fp32 "
                     f"step (target >= 80 %), {now['clips_s'] / today['clips_s']:.1f}x today's default path "
                     f"(target >= 4x)")
    for name in (WHOLE_STEPS[0][0], WHOLE_STEPS[-1][0]):
        if ok(results[name]):
            lines.append(f"share of the step, {name.strip()}: "
                         + ", ".join(f"{k} {v:.1%}" for k, v in results[name]["shares"].items()))
    return lines


def report_compile(runs: Runs, args) -> list[str]:
    lines = []
    for what, reference, part, flags in (
            ("bare step, channels-last fp32, tuned", bare_best, "bare", dict(channels_last=True, bf16=False)),
            ("whole step, tinyasc now", whole_now, "whole", dict(channels_last=True, blocked=True))):
        eager = reference(runs)
        for mode in args.compile_modes:
            # A fresh inductor cache: the compile time is what a first run on a machine pays.
            with tempfile.TemporaryDirectory() as cache:
                r = runs.get(f"{what}, torch.compile {mode}", part, True,
                             env={"TORCHINDUCTOR_CACHE_DIR": cache}, compile=mode, **flags)
            if ok(r, eager):
                lines.append(f"torch.compile {mode}, {what}: {r['clips_s'] / eager['clips_s']:.2f}x eager; compile "
                             f"{r['compile_s']:.0f} s (first call; eager's first call {eager['first_s']:.1f} s)")
    return lines


def report_lightning(runs: Runs, args) -> list[str]:
    hand = whole_now(runs)
    results = {v: runs.get(label, "lightning", True, variant=v) for v, label in VARIANTS.items()}
    shipped, lines = results["shipped"], []
    # The hand-written step runs without torch's deterministic mode; "warn" turns it on (warn_only), so the
    # deterministic=False variant is the one that differs from it by the loop alone.
    for variant, what in (("shipped", "as shipped"), ("nondeterministic", "with deterministic=False")):
        r = results[variant]
        if ok(r, hand):
            ms = 1e3 * args.batch * (1 / r["clips_s"] - 1 / hand["clips_s"])
            lines.append(f"Lightning loop {what} against the hand-written whole step (tuned, channels-last, blocked, "
                         f"fp32): overhead {1 - r['clips_s'] / hand['clips_s']:.1%} of the Lightning step's wall "
                         f"time ({ms:+.0f} ms a step)")
    if ok(shipped) and shipped["writes"] * shipped["log_every"] != args.steps:
        lines.append(f"  note: the measured steps held {shipped['writes']} logger writes in {args.steps} steps; a long "
                     f"run holds 1 in {shipped['log_every']} (use --steps {shipped['log_every']} for the real mix)")
    for variant, r in results.items():
        if variant != "shipped" and ok(r, shipped):
            ms = 1e3 * args.batch * (1 / r["clips_s"] - 1 / shipped["clips_s"])
            lines.append(f"  {VARIANTS[variant].strip()}: {r['clips_s'] / shipped['clips_s'] - 1:+.1%} clips/s "
                         f"against as shipped ({ms:+.0f} ms a step)")
    return lines


def note(r: dict) -> str:
    if "in_batch" in r:
        return f"batch start-end {r['in_batch']:.0%}, between {1 - r['in_batch']:.0%}; {r['writes']} logger writes"
    return f"compile {r['compile_s']:.0f} s (first call)" if "compile_s" in r else ""


def print_table(rows: list) -> None:
    width = max(len(n) for n, _ in rows)
    print(f"\n{'measurement':<{width}}  {'clips/s':>8}  {'user s':>7}  {'sys s':>6}  note")
    for name, r in rows:
        if "failed" in r:
            print(f"{name:<{width}}  failed: {r['failed']}")
        else:
            print(f"{name:<{width}}  {r['clips_s']:>8.1f}  {r['user_s']:>7.1f}  {r['sys_s']:>6.1f}  {note(r)}".rstrip())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="clips a batch (default 256)")
    parser.add_argument("--steps", type=int, default=3, help="measured steps a configuration (default 3)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed steps before them (default 1; compiled steps take at least 2)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma list of parts to run, from {', '.join(PARTS)} (default: all)")
    parser.add_argument("--compile-modes", default=",".join(COMPILE_MODES),
                        help=f"torch.compile modes of the compile part (default {','.join(COMPILE_MODES)})")
    parser.add_argument("--main-job", action="store_true", help="also time `tinyasc train` (warm cache)")
    # A child process's configuration: set by the parent, not by hand.
    parser.add_argument("--part", choices=("bare", "whole", "lightning", "frontend"), help=argparse.SUPPRESS)
    for flag in ("channels-last", "bf16", "blocked"):
        parser.add_argument(f"--{flag}", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--compile", default="", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="shipped", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.only, args.compile_modes = args.only.split(","), args.compile_modes.split(",")
    unknown = sorted(set(args.only) - set(PARTS))
    if unknown:
        parser.error(f"--only: unknown part {unknown[0]!r}; parts: {', '.join(PARTS)}")
    return args


def main() -> int:
    args = parse_args()
    if args.part:
        return run_part(args)
    print(f"torch {torch.__version__}, {len(os.sched_getaffinity(0))} cores, batch {args.batch}, "
          f"{args.warmup} warm-up + {args.steps} steps")
    runs = Runs(batch=args.batch, steps=args.steps, warmup=args.warmup)
    summaries = []
    for part, report in (("bare", report_bare), ("whole", report_whole), ("compile", report_compile),
                         ("lightning", report_lightning)):
        if part in args.only:
            summaries.append(report(runs, args) or [])
    if runs.rows:
        print_table(runs.rows)
    for lines in summaries:
        if lines:
            print("\n" + "\n".join(lines))
    if "frontend" in args.only:
        fe = child("frontend", True, batch=args.batch, steps=args.steps)
        print(f"\nfront end, batch {args.batch}: " + (f"failed: {fe['failed']}" if "failed" in fe else
                                                     ", ".join(f"{k} {v:.0f} clips/s" for k, v in fe.items())))
    if args.main_job:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tinyasc.cli", "train", "--out", "/tmp/tinyasc-bench-main"], check=True,
                       capture_output=True)
        print(f"main job (tinyasc train, warm cache): {time.perf_counter() - start:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
