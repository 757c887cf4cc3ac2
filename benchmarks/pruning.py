"""Structured pruning over the model zoo: tinyasc's channel analysis before and after, and Torch-Pruning.

    git show 0d05b95:tinyasc/compress/channels.py > /tmp/channels_before.py
    python benchmarks/pruning.py zoo --before /tmp/channels_before.py [--tp] [--tp-timeout 300]
    python benchmarks/pruning.py curve --data /tmp/synth2000 [--epochs 10] [--finetune-epochs 1]
                                       [--rate 0.7] [--steps 7] [--tp] [--out docs/pruning_mini_segnet.png]

``zoo``: for every registered model, the prunable channel groups and the parameters and MACs left
at pruning rates 0.5 and 0.95 (every prunable group keeps round((1 - rate) x width) channels),
with the channel analysis of ``--before`` (a copy of an older ``tinyasc/compress/channels.py``) and
with the current one; whether the current cut is exact (the consumers' weights on the removed
channels zeroed first, the pruned network must give the same logits); whether the network pruned
at 0.5 converts to int8 (post-training, min/max observers) and exports to ONNX with ONNX Runtime
agreeing. ``--tp`` adds Torch-Pruning (DepGraph; ``pip install --no-deps torch-pruning``) at the same
rates with L1 magnitude importance and the layers that give the logits ignored, each model in a
subprocess under ``--tp-timeout``, and checks its cuts the same way (consumers named by its own
dependency groups).

``curve``: report 003's Figure 3 on the synthetic set. Mini-SegNet is trained from scratch on the
training clips of ``--data`` (``tinyasc synth DIR --clips 2000``: 1,500 training clips, 500 test
clips), then pruned iteratively, conv filters only (the 1024-unit dense layer stays, as in the
report): the rate rises by ``--rate / --steps`` per step and the network is fine-tuned for
``--finetune-epochs`` after each cut; test-set macro accuracy, parameters and MACs after every step.
With ``--tp`` the same trained network is pruned by Torch-Pruning with the same schedule and the
same fine-tuning. Plain training loop on precomputed log-mel features (Adam, batch 32, no
augmentation), one seed. Prints markdown tables; writes the plot (``plot_pruning``) and a JSON file.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyasc.complexity import torchinfo_counts  # noqa: E402
from tinyasc.compress import channels  # noqa: E402
from tinyasc.compress.prune import count_params, plot_pruning, prune_to, widths_of  # noqa: E402
from tinyasc.models import create_model, input_shape, list_models  # noqa: E402

RATES = (0.5, 0.95)


def load_channels(path: str):
    spec = importlib.util.spec_from_file_location("channels_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def build(name: str):
    """The model in eval mode with BN statistics and affine parameters that matter, and a fixed input."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.3, 0.3)
    return model, torch.randn(2, *input_shape(name)[1:])


def cut_with(module, model, rate: float, x) -> int:
    """Prune ``model`` in place with a channel-analysis module's own functions; returns prunable groups."""
    groups = module.prunable(module.channel_groups(model, x))
    for g in groups:
        target = max(1, int(round(g.width * (1 - rate))))
        importance = module.filter_importance(model, g)
        if hasattr(module, "select"):
            keep = module.select(importance, g, target)
        else:  # the analysis before grouped convs
            keep = importance.topk(target).indices
        if len(keep) < g.width:
            module.cut_group(model, g, keep)
    return len(groups)


def counts(model, x) -> tuple[int, int]:
    return torchinfo_counts(model, (1, *x.shape[1:]))


def zero_unread(model, group, keep) -> None:
    """Zero what ``group``'s consumers read of the channels ``keep`` leaves out."""
    mods = dict(model.named_modules())
    for name in group.consumers:
        m = mods[name]
        for slot in group.slots[name]:
            gone = torch.ones(sum(slot.axis.sizes), dtype=torch.bool)
            gone[slot.take(keep)] = False
            if isinstance(m, nn.Conv2d) and m.groups > 1:  # grouped: input i is column i % per_in of its block
                per_in, per_out = m.in_channels // m.groups, m.out_channels // m.groups
                for i in gone.nonzero().flatten().tolist():
                    m.weight[i // per_in * per_out:(i // per_in + 1) * per_out, i % per_in] = 0
            else:
                m.weight[:, gone] = 0


def exact_cut(model, x, rate: float = 0.5) -> float:
    """Relative max difference of the logits after cutting channels the consumers no longer read."""
    model = copy.deepcopy(model)
    groups = channels.prunable(channels.channel_groups(model, x[:1]))
    keeps = []
    with torch.no_grad():
        for g in groups:
            target = max(1, int(round(g.width * (1 - rate))))
            keeps.append(channels.select(channels.filter_importance(model, g), g, target))
            zero_unread(model, g, keeps[-1])
        before = model(x)
        for g, keep in zip(groups, keeps):
            channels.cut_group(model, g, keep)
        after = model(x)
    return float((after - before).abs().max() / before.abs().max().clamp_min(1e-12))


def int8_and_onnx(model, x) -> tuple[str, str]:
    from tinyasc.modelfile.int8 import calibrate, convert, prepare, quiet_ao

    try:
        prepared = prepare(model, "ptq", x[:1], fast_observers=True)
        calibrate(prepared, [x])
        with quiet_ao():
            err = float((convert(prepared)(x) - model(x)).norm() / model(x).norm())
        int8 = f"ok ({err:.1%})"
    except Exception as exc:  # noqa: BLE001  (a benchmark row, not a failure)
        int8 = f"fails: {str(exc).splitlines()[0][:60]}"
    try:
        import onnxruntime as ort  # optional dependency

        path = Path("/tmp") / f"prune-bench-{type(model).__name__}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
        diff = float(np.abs(got - model(x).detach().numpy()).max())
        onnx = f"ok ({diff:.0e})" if diff <= 1e-4 * max(1.0, float(model(x).abs().max())) else f"differs ({diff:.1e})"
    except Exception as exc:  # noqa: BLE001
        onnx = f"fails: {str(exc).splitlines()[0][:60]}"
    return int8, onnx


def output_layers(model, x) -> list[str]:
    """The layers whose outputs are the logits (a pruner must not narrow them)."""
    return [n for g in channels.channel_groups(model, x[:1]) if g.frozen == "model output" for n in g.producers]


def tp_prune(model, x, rate: float, ignored: list[str], steps: int = 1, check: bool = False,
             filters_only: bool = False):
    """Torch-Pruning, L1 magnitude, uniform ``rate`` per group; ``check`` returns the relative logit
    difference against the unpruned model with the consumers' weights on the removed channels zeroed."""
    import torch_pruning as tp  # optional: only this benchmark uses it

    mods = dict(model.named_modules())
    ignored_modules = [mods[n] for n in ignored]
    if filters_only:
        ignored_modules += [m for m in model.modules() if isinstance(m, nn.Linear) and m not in ignored_modules]
    pruner = tp.pruner.MagnitudePruner(model, x[:1], importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=rate, ignored_layers=ignored_modules, iterative_steps=steps)
    if not check:
        return pruner
    reference = copy.deepcopy(model)
    names = {m: n for n, m in model.named_modules()}
    ref_mods = dict(reference.named_modules())
    groups = 0
    with torch.no_grad():
        for group in pruner.step(interactive=True):
            groups += 1
            for dep, idxs in group:
                layer = dep.target.module
                if getattr(dep.handler, "__name__", "") != "prune_in_channels" or \
                        not isinstance(layer, (nn.Conv2d, nn.Linear)):
                    continue
                ref = ref_mods[names[layer]]  # the unpruned layer: this one may have lost outputs already
                w = ref.weight
                if isinstance(ref, nn.Conv2d) and ref.groups > 1:
                    if ref.groups == ref.in_channels:
                        continue  # depthwise: pruned as a member, nothing to zero
                    per_in, per_out = ref.in_channels // ref.groups, ref.out_channels // ref.groups
                    for i in idxs:
                        g = i // per_in
                        w[g * per_out:(g + 1) * per_out, i % per_in] = 0
                else:
                    w[:, idxs] = 0
            group.prune()
        before, after = reference(x), model(x)
    return groups, float((after - before).abs().max() / before.abs().max().clamp_min(1e-12))


def tp_row(name: str) -> dict:
    """Torch-Pruning on one model (run in a subprocess: it can hang or fail)."""
    model, x = build(name)
    ignored = output_layers(model, x)
    row = {}
    t = time.perf_counter()
    trial = copy.deepcopy(model)
    row["groups"], row["exact"] = tp_prune(trial, x, 0.5, ignored, check=True)
    row["seconds"] = time.perf_counter() - t
    row["runs"] = tuple(trial(x).shape) == (2, 10)
    row["counts"] = {}
    for rate in RATES:
        trial = copy.deepcopy(model)
        tp_prune(trial, x, rate, ignored).step()
        row["counts"][str(rate)] = counts(trial, x)
    return row


def zoo(args) -> None:
    before = load_channels(args.before) if args.before else None
    torch.set_num_threads(args.threads)
    rows = {}
    for name in args.models or list_models():
        model, x = build(name)
        row = {"params": count_params(model), "macs": counts(model, x)[1], "before": {}, "after": {}}
        for label, module in (("before", before), ("after", channels)):
            if module is None:
                continue
            for rate in RATES:
                trial = copy.deepcopy(model)
                t = time.perf_counter()
                try:
                    n = cut_with(module, trial, rate, x[:1])
                    trial(x)
                    row[label][str(rate)] = counts(trial, x)
                except Exception as exc:  # noqa: BLE001
                    n = 0
                    row[label][str(rate)] = f"fails: {str(exc).splitlines()[0][:80]}"
                row[label]["groups"] = n
                row[label]["seconds"] = time.perf_counter() - t
        groups = channels.channel_groups(model, x[:1])
        row["groups"] = len(groups)
        row["frozen"] = sorted({g.frozen.split(" (")[0].split(":")[0] if "grouped conv" not in g.frozen else
                                "grouped conv" for g in groups if g.frozen and g.producers and g.width > 1
                                and g.frozen != "model output"})[:3]
        if row["after"]["groups"]:
            row["exact"] = exact_cut(model, x)
            half = copy.deepcopy(model)
            prune_to(half, widths_of(half, x[:1]), 0.5, x[:1])
            row["int8"], row["onnx"] = int8_and_onnx(half, x)
        if args.tp:
            try:
                out = subprocess.run([sys.executable, __file__, "tp-one", name], capture_output=True, text=True,
                                     timeout=args.tp_timeout)
                lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
                row["tp"] = json.loads(lines[-1]) if lines else \
                    {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:100]}
            except subprocess.TimeoutExpired:
                row["tp"] = {"error": f"no result in {args.tp_timeout} s"}
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print_zoo(rows)


def _fmt(c) -> str:
    return c if isinstance(c, str) else f"{c[0] / 1000:.1f} k / {c[1] / 1e6:.2f} M"


def print_zoo(rows: dict) -> None:
    print("\n| model | params / MACs | groups | prunable before -> after | rate 0.95 before | rate 0.95 after |"
          " rate 0.5 after | exact cut | int8 of 0.5 | ONNX of 0.5 | still frozen (besides the logits) |")
    print("|---|---|---:|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        b, a = r.get("before", {}), r["after"]
        exact = f"{r['exact']:.0e}" if "exact" in r else "-"
        print(f"| {name} | {r['params'] / 1000:.1f} k / {r['macs'] / 1e6:.2f} M | {r['groups']} | "
              f"{b.get('groups', '-')} -> {a['groups']} | {_fmt(b.get('0.95', '-'))} | {_fmt(a['0.95'])} | "
              f"{_fmt(a['0.5'])} | {exact} | {r.get('int8', '-')} | {r.get('onnx', '-')} | "
              f"{'; '.join(r['frozen']) or '-'} |")
    if any("tp" in r for r in rows.values()):
        print("\n| model | tinyasc groups | Torch-Pruning groups | tinyasc 0.5 | Torch-Pruning 0.5 | tinyasc 0.95 |"
              " Torch-Pruning 0.95 | Torch-Pruning exact cut | tinyasc s | Torch-Pruning s |")
        print("|---|---:|---:|---|---|---|---|---|---:|---:|")
        for name, r in rows.items():
            tp = r.get("tp", {})
            if "error" in tp:
                cells = f"- | {tp['error']} | | | | | |"
            else:
                cells = (f"{tp['groups']} | {_fmt(r['after']['0.5'])} | {_fmt(tp['counts']['0.5'])} | "
                         f"{_fmt(r['after']['0.95'])} | {_fmt(tp['counts']['0.95'])} | {tp['exact']:.0e} | "
                         f"{r['after']['seconds']:.2f} | {tp['seconds']:.2f} |")
            if "error" in tp:
                cells = (f"- | {_fmt(r['after']['0.5'])} | {tp['error']} | {_fmt(r['after']['0.95'])} | - | - | "
                         f"{r['after']['seconds']:.2f} | - |")
            print(f"| {name} | {r['after']['groups']} | {cells}")


# --- the accuracy curve ------------------------------------------------------------------------------

def features(data: Path, name: str):
    """Log-mel features (the model's own front end) and labels of the training and test lists."""
    from tinyasc.audio.features import MelFrontEnd
    from tinyasc.audio.io import load_audio
    from tinyasc.models import frontend_config

    cache = data / f".features-{name}.pt"
    if cache.is_file():
        return torch.load(cache)
    fe = MelFrontEnd(**frontend_config(name)).eval()
    classes = sorted({line.split("\t")[1] for line in (data / "meta.csv").read_text().splitlines()[1:]})
    out = {}
    for split, listing in (("train", "split100.csv"), ("test", "test.csv")):
        rows = [line.split("\t") for line in (data / listing).read_text().splitlines()[1:]]
        waves = torch.stack([torch.from_numpy(load_audio(data / f, fe.sample_rate, 1.0)) for f, _ in rows])
        with torch.no_grad():
            feats = torch.cat([fe(waves[i:i + 100].float()) for i in range(0, len(waves), 100)])
        out[split] = (feats, torch.tensor([classes.index(c) for _, c in rows]))
    mean, std = out["train"][0].mean((0, 2, 3), keepdim=True), out["train"][0].std((0, 2, 3), keepdim=True)
    out = {k: ((f - mean) / std, y) for k, (f, y) in out.items()}
    torch.save(out, cache)
    return out


def fit(model, data, epochs: int, lr: float, seed: int = 0) -> None:
    feats, labels = data
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(feats) + 31) // 32)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(feats), generator=g).split(32):
            loss = nn.functional.cross_entropy(model(feats[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


@torch.no_grad()
def score(model, data) -> dict:
    feats, labels = data
    model.eval()
    pred = torch.cat([model(feats[i:i + 100]).argmax(1) for i in range(0, len(feats), 100)])
    per_class = [float((pred[labels == c] == c).float().mean()) for c in labels.unique()]
    return {"macro_accuracy": float(np.mean(per_class)), "accuracy": float((pred == labels).float().mean())}


def curve(args) -> None:
    from tinyasc.data.synthetic import synthesize

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not (data / "meta.csv").is_file():
        synthesize(data, n_clips=2000, seed=0)
    t = time.perf_counter()
    sets = features(data, "mini_segnet")
    print(f"features: {time.perf_counter() - t:.0f} s; train {tuple(sets['train'][0].shape)}, "
          f"test {tuple(sets['test'][0].shape)}", flush=True)
    torch.manual_seed(0)
    model = create_model("mini_segnet")
    x = sets["test"][0][:2]
    t = time.perf_counter()
    cached = data / f".mini_segnet-trained-{args.epochs}.pt"  # the same start for a rerun
    if cached.is_file():
        model.load_state_dict(torch.load(cached))
    else:
        fit(model, sets["train"], args.epochs, 1e-3)
        torch.save(model.state_dict(), cached)
    model.eval()
    trained = {"rate": 0.0, **dict(zip(("params", "macs"), counts(model, x))), **score(model, sets["test"]),
               "seconds": time.perf_counter() - t}
    print(f"trained {args.epochs} epochs in {trained['seconds']:.0f} s: {trained}", flush=True)
    methods = ["tinyasc"] + (["torch-pruning"] if args.tp else [])
    results = {}
    for method in methods:
        net = copy.deepcopy(model).eval()
        history = [dict(trained, cut_accuracy=trained["macro_accuracy"])]
        original = widths_of(net, x[:1], filters_only=True)
        pruner = tp_prune(net, x, args.rate, output_layers(net, x), args.steps, filters_only=True) \
            if method == "torch-pruning" else None
        for s in range(1, args.steps + 1):
            rate = args.rate * s / args.steps
            t = time.perf_counter()
            if pruner is None:
                prune_to(net, original, rate, x[:1])
            else:
                pruner.step()
            cut = score(net, sets["test"])["macro_accuracy"]
            fit(net, sets["train"], args.finetune_epochs, args.finetune_lr, seed=1000 * args.seed + s)
            history.append({"rate": rate, **dict(zip(("params", "macs"), counts(net, x))), **score(net, sets["test"]),
                            "cut_accuracy": cut, "seconds": time.perf_counter() - t})
            print(method, json.dumps(history[-1]), flush=True)
        results[method] = history
    plot_pruning(results["tinyasc"], Path(args.out),
                 title="mini_segnet on the synthetic set: test accuracy against pruning rate (tinyasc)", stage="test")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print("\n| rate | " + " | ".join(f"{m} params / MACs | {m} acc. after cut | {m} acc. after fine-tuning"
                                      for m in methods) + " |")
    print("|---:|" + "---|---:|---:|" * len(methods))
    for i in range(args.steps + 1):
        cells = []
        for m in methods:
            h = results[m][i]
            cells.append(f"{h['params'] / 1000:.1f} k / {h['macs'] / 1e6:.2f} M | {100 * h['cut_accuracy']:.1f} % | "
                         f"{100 * h['macro_accuracy']:.1f} %")
        print(f"| {100 * results[methods[0]][i]['rate']:.0f} % | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    z = sub.add_parser("zoo")
    z.add_argument("--before", help="an older tinyasc/compress/channels.py to compare against")
    z.add_argument("--tp", action="store_true", help="add Torch-Pruning (importable torch_pruning needed)")
    z.add_argument("--tp-timeout", type=int, default=300)
    z.add_argument("--models", nargs="*")
    z.add_argument("--threads", type=int, default=2)
    z.add_argument("--json")
    one = sub.add_parser("tp-one")
    one.add_argument("name")
    c = sub.add_parser("curve")
    c.add_argument("--data", required=True)
    c.add_argument("--epochs", type=int, default=10)
    c.add_argument("--finetune-epochs", type=int, default=1)
    c.add_argument("--finetune-lr", type=float, default=3e-4)
    c.add_argument("--rate", type=float, default=0.7)
    c.add_argument("--steps", type=int, default=7)
    c.add_argument("--tp", action="store_true")
    c.add_argument("--seed", type=int, default=0, help="order of the fine-tuning batches (the start is the same)")
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--out", default="docs/pruning_mini_segnet.png")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    if args.cmd == "zoo":
        zoo(args)
    elif args.cmd == "tp-one":
        torch.set_num_threads(1)
        print(json.dumps(tp_row(args.name)))
    else:
        curve(args)


if __name__ == "__main__":
    main()
