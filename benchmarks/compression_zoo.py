"""Every registered model through train -> int8 PTQ -> int8 QAT on the built-in synthetic set: macro
accuracy of each, and the bytes of the converted networks. A short budget (stated in the output):
the point is that every model goes through every stage and what int8 costs each, not accuracy.

    python benchmarks/compression_zoo.py [--clips 2000] [--epochs 2] [--qat-epochs 1] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tinyasc import config as cfgmod
from tinyasc.compress.quantize import quantize_model
from tinyasc.experiment import train
from tinyasc.models import list_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--out", default="runs/compression_zoo")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for name in args.models or list_models():
        try:
            row = measure(name, args, out)
        except Exception as exc:  # one model's failure is a row of the table, not the end of the run
            row = {"model": name, "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
    results = out / "results.json"
    earlier = {r["model"]: r for r in json.loads(results.read_text())} if results.exists() else {}
    earlier.update({r["model"]: r for r in rows})  # runs of other models, e.g. one at a smaller budget, are kept
    results.write_text(json.dumps(list(earlier.values()), indent=2))
    print(f"\nsynthetic set {args.clips} clips, {args.epochs} training epochs, batch {args.batch}, "
          f"PTQ on 8 batches, QAT {args.qat_epochs} epoch(s)")
    print("| model | fp32 B | int8 B | fp16 B | float acc | PTQ | QAT | fp16 |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | failed: {r['error']} |||||||")
            continue
        print(f"| {r['model']} | {r['fp32_bytes']:,} | {r['int8_bytes']:,} | {r['fp16_bytes']:,} | {r['float']:.1%} | "
              f"{r['ptq'] - r['float']:+.1%} | {r['qat'] - r['float']:+.1%} | {r['fp16'] - r['float']:+.1%} |")


def measure(name: str, args, out: Path) -> dict:
    start = time.time()
    config = cfgmod.resolve(None, [{"data": {"synthetic_clips": args.clips},
                                    "trainer": {"epochs": args.epochs, "batch_size": args.batch},
                                    "schedule": {"warmup_steps": 20}}], model=name)
    run = out / name
    result = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else \
        train(config, run, progress=False)
    ptq = quantize_model(run, "ptq", out=run / "compressed" / "ptq.pt", calib_batches=8, progress=False)
    qat = quantize_model(run, "qat", out=run / "compressed" / "qat.pt", epochs=args.qat_epochs, progress=False)
    half = quantize_model(run, "fp16", out=run / "compressed" / "fp16.pt", progress=False)
    row = {"model": name, "float": result["macro_accuracy"], "ptq": ptq["compressed"]["macro_accuracy"],
           "qat": qat["compressed"]["macro_accuracy"], "fp16": half["compressed"]["macro_accuracy"],
           "fp32_bytes": ptq["float"]["complexity"]["bytes"], "int8_bytes": ptq["compressed"]["complexity"]["bytes"],
           "fp16_bytes": half["compressed"]["complexity"]["bytes"], "float_in_int8": ptq["float_in_int8"],
           "seconds": round(time.time() - start), "clips": args.clips, "epochs": args.epochs,
           "qat_epochs": args.qat_epochs}
    return row


if __name__ == "__main__":
    main()
