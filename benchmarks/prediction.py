"""Prediction throughput end to end on an evaluation set of DCASE size: audio files in, logits out.

    python benchmarks/prediction.py [--clips 135730] [--distinct 2000] [--old-clips 5000]
                                    [--decode-clips 3000] [--batch 256] [--workers N]
                                    [--work /tmp/tinyasc-prediction] [--keep]

1. Writes ``--distinct`` one-second 44.1 kHz 24-bit WAV files (noise), the format of the DCASE
   evaluation sets, and hard-links them under ``--clips`` names (default 135,730: one split of the
   DCASE 2024 evaluation set). Every name is opened and decoded on its own, but the distinct files
   are few enough to stay in the page cache, so disk reads are not measured.
2. Builds two DCASE 2024 baseline model files: a freshly initialised float network saved in
   tinyasc's model-file format, and its post-training int8 conversion (``prepare`` / ``calibrate``
   / ``convert``, the steps ``tinyasc quantize --mode ptq`` runs; calibrated on the features of 256
   of the clips). Fresh weights cost the same time as trained ones.
3. Times, one after another in one run, decode + resample + front end + network:
   - the old path (``submit`` before ``predict_logits``): files decoded one at a time, batches of
     64, an NCHW network, no overlap; on the first ``--old-clips`` files;
   - ``predict_logits``: decoding threads ahead of the network, batches of ``--batch`` windows,
     channels-last float network; fp32 and int8 on all files.
   For each: wall-clock clips/s, CPU seconds per clip (all threads together), the load average.
4. Decoding and resampling alone on ``--decode-clips`` files: one thread, a thread pool, a
   process pool.
5. With one torch thread, CPU time per clip of front end + network on 256 clips computed in chunks
   of 16 (what ``Predictor.logits`` does on a CPU) against whole batches of 256.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyasc import config as cfgmod  # noqa: E402
from tinyasc.audio.io import load_audio, load_audio_ahead  # noqa: E402
from tinyasc.deploy.predict import default_workers, predict_logits  # noqa: E402
from tinyasc.modelfile import format as artifact  # noqa: E402
from tinyasc.modelfile import load_predictor  # noqa: E402
from tinyasc.modelfile.int8 import calibrate, convert, prepare  # noqa: E402
from tinyasc.models import create_model  # noqa: E402

DCASE_EVAL_CLIPS = 135_730
CLASSES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
           "street_pedestrian", "street_traffic", "tram"]


def cpu_seconds(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_clips(work: Path, n: int, distinct: int) -> list[Path]:
    pool, audio = work / f"pool-{distinct}", work / f"eval-{n}-{distinct}" / "audio"
    if not (pool / "done").is_file():
        pool.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for k in range(distinct):
            sf.write(pool / f"{k}.wav", 0.1 * rng.standard_normal((44100, 1)), 44100, subtype="PCM_24")
        (pool / "done").write_text("")
    paths = [audio / f"{k}.wav" for k in range(n)]
    if not (audio.parent / "done").is_file():
        shutil.rmtree(audio.parent, ignore_errors=True)
        audio.mkdir(parents=True)
        for k, path in enumerate(paths):
            os.link(pool / f"{k % distinct}.wav", path)
        (audio.parent / "done").write_text("")
    return paths


def model_files(work: Path, calib_paths: list[Path]) -> dict[str, Path]:
    torch.manual_seed(0)
    config = cfgmod.resolve(None, [])
    hyper = {"config": config, "classes": CLASSES, "devices": ["a"]}
    net = create_model(config["model"]["name"], n_classes=len(CLASSES), **config["model"]["args"]).eval()
    files = {"fp32": work / "fp32.pt", "int8": work / "int8.pt"}
    artifact.save(files["fp32"], artifact.network_record(net, hyper))
    float_pred = load_predictor(files["fp32"])
    waves = torch.from_numpy(np.stack(list(load_audio_ahead(calib_paths, 32000, 1.0))))
    prepared = prepare(net, "ptq", torch.zeros(float_pred.input_shape))
    calibrate(prepared, (float_pred.features(waves[i:i + 64]) for i in range(0, len(waves), 64)))
    artifact.save(files["int8"], artifact.network_record(convert(prepared), hyper, "int8", "ptq"))
    return files


def old_path(predictor, paths: list[Path], batch: int = 64) -> np.ndarray:
    """``submit`` before this benchmark: one file at a time, then the NCHW network (as rebuilt from the file)."""
    nchw = artifact.build_network(predictor.record)
    out = []
    for i in range(0, len(paths), batch):
        waves = np.stack([load_audio(p, predictor.sample_rate, predictor.duration) for p in paths[i:i + batch]])
        with torch.inference_mode():
            out.append(nchw(predictor.features(torch.from_numpy(waves))).float().numpy())
    return np.concatenate(out)


def timed(fn, n: int, children: bool = False) -> tuple[dict, object]:
    cpu, start = cpu_seconds(children) + cpu_seconds(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - start, cpu_seconds(children) + cpu_seconds() - cpu
    return {"clips": n, "seconds": wall, "clips_s": n / wall, "cpu_ms": 1000 * cpu / n,
            "load": os.getloadavg()[0]}, result


def chunk_costs(files: dict[str, Path], paths: list[Path]) -> dict:
    """CPU ms per clip of front end + network with one thread, in chunks of 16 and 256 (best of 3)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    waves = torch.from_numpy(np.stack([load_audio(p, 32000, 1.0) for p in paths[:256]]))
    rows = {}
    for precision, file in files.items():
        predictor = load_predictor(file)
        for chunk in (16, 256):
            best = float("inf")
            for _ in range(3):
                cpu = cpu_seconds()
                for part in waves.split(chunk):
                    predictor.logits_from_features(predictor.features(part))
                best = min(best, cpu_seconds() - cpu)
            rows[f"{precision}, chunks of {chunk}"] = 1000 * best / len(waves)
    torch.set_num_threads(threads)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=DCASE_EVAL_CLIPS, help="files to predict (default: one DCASE split)")
    ap.add_argument("--distinct", type=int, default=2000, help="distinct files behind the hard links")
    ap.add_argument("--old-clips", type=int, default=5000, help="files for the old path (it is slow)")
    ap.add_argument("--decode-clips", type=int, default=3000, help="files for the decode-only comparison")
    ap.add_argument("--batch", type=int, default=256, help="windows per network batch")
    ap.add_argument("--workers", type=int, default=default_workers(), help="decoding threads")
    ap.add_argument("--work", default="/tmp/tinyasc-prediction", help="folder for the clips and models")
    ap.add_argument("--keep", action="store_true", help="keep the clips and models")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = write_clips(work, args.clips, args.distinct)
    print(f"{args.clips:,} one-second 44.1 kHz 24-bit WAV names, hard links to {args.distinct:,} distinct files "
          f"(held in the page cache: disk reads are not measured); written in {time.perf_counter() - start:.0f} s")
    files = model_files(work, paths[:256])
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"{args.workers} decoding threads, batches of {args.batch}; load average before: {os.getloadavg()[0]:.1f}")

    rows, old_n = {}, min(args.old_clips, args.clips)
    for precision, file in files.items():
        predictor = load_predictor(file)
        predict_logits(predictor, paths[:args.batch], args.batch, args.workers, progress=False)  # warm-up
        rows[f"old path, {precision}"], old = timed(lambda: old_path(predictor, paths[:old_n]), old_n)
        rows[f"predict_logits, {precision}"], new = timed(
            lambda: predict_logits(predictor, paths, args.batch, args.workers, progress=True), args.clips)
        rows[f"predict_logits, {precision}"]["max_diff"] = float(np.abs(new[:old_n] - old).max())

    print("\n| path | clips | seconds | clips/s | CPU ms per clip | load average | max abs logit diff vs old |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        diff = f"{r['max_diff']:.1e}" if "max_diff" in r else ""
        print(f"| {name} | {r['clips']:,} | {r['seconds']:.1f} | {r['clips_s']:.0f} | {r['cpu_ms']:.2f} | "
              f"{r['load']:.1f} | {diff} |")

    subset, n = paths[:args.decode_clips], min(args.decode_clips, args.clips)
    decode = {"one thread": timed(lambda: [load_audio(p, 32000, 1.0) for p in subset], n)[0],
              f"{args.workers} threads (load_audio_ahead)": timed(
                  lambda: list(load_audio_ahead(subset, 32000, 1.0, workers=args.workers)), n)[0]}

    def processes():
        with ProcessPoolExecutor(args.workers) as pool:
            return list(pool.map(partial(load_audio, sample_rate=32000, duration=1.0), subset, chunksize=64))

    decode[f"{args.workers} processes"] = timed(processes, n, children=True)[0]
    print("\n| decode + resample to 32 kHz | clips | clips/s | CPU ms per clip | load average |\n|---|---:|---:|---:|---:|")
    for name, r in decode.items():
        print(f"| {name} | {r['clips']:,} | {r['clips_s']:.0f} | {r['cpu_ms']:.2f} | {r['load']:.1f} |")
    print("\n| one thread, front end + network | CPU ms per clip |\n|---|---:|")
    for name, ms in chunk_costs(files, paths).items():
        print(f"| {name} | {ms:.2f} |")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
