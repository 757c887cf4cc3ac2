"""Why Freq-MixStyle alone does not reach the unseen synthetic devices, and DIR does.

Freq-MixStyle replaces a clip's per-mel-band mean and spread with a mix of its own and another
training clip's, so the band means it produces stay inside the range the training clips already
span. This script measures, per test device, how far its band means lie from device A's and how
many of them fall outside that training range, and outside the range once DIR (every device-A
training clip convolved with one impulse response of the folder) is added.

    python studies/device_statistics.py runs/device_robustness/synthetic-2400
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from tinyasc.audio.features import MelFrontEnd
from tinyasc.audio.io import load_audio
from tinyasc.augment.device_ir import convolve, load_ir_folder
from tinyasc.config import DEFAULTS
from tinyasc.data.tau import TauFolder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from device_robustness import FRONTEND  # noqa: E402  (the study's front end)

DB = 10 / np.log(10)  # natural-log power -> dB


def band_means(frontend: MelFrontEnd, waves: torch.Tensor) -> np.ndarray:
    """Per-clip mean log-mel energy of every band, in dB: [clips, mels]."""
    with torch.no_grad():
        return DB * torch.cat([frontend(w).mean(dim=(1, 3)) for w in waves.split(256)]).numpy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="the study's synthetic dataset folder")
    p.add_argument("--irs", default=str(Path(__file__).resolve().parents[2] / "shared" / "dirs"))
    args = p.parse_args(argv)
    torch.manual_seed(0)
    frontend = MelFrontEnd(**{**DEFAULTS["frontend"], **FRONTEND})
    folder = TauFolder(args.data)
    rate = frontend.sample_rate

    def load(clips):
        return torch.from_numpy(np.stack([load_audio(folder.path(c.filename), rate, 1.0) for c in clips]))

    train_clips, test_clips = folder.split(100), folder.test()
    train = load(train_clips)
    train_means = band_means(frontend, train)
    lo, hi = train_means.min(axis=0), train_means.max(axis=0)
    device_a = train[[i for i, c in enumerate(train_clips) if c.device == "a"]]
    irs = torch.from_numpy(load_ir_folder(args.irs, rate))
    dir_means = band_means(frontend, convolve(device_a, irs[torch.randint(0, len(irs), (len(device_a),))]))
    lo_dir, hi_dir = np.minimum(lo, dir_means.min(axis=0)), np.maximum(hi, dir_means.max(axis=0))

    test = load(test_clips)
    test_means = band_means(frontend, test)
    devices = np.array([c.device for c in test_clips])
    reference = test_means[devices == "a"].mean(axis=0)
    print("| device | mean abs. offset from device a (dB) | band means outside the training range "
          "(what Freq-MixStyle can reach) | ... outside training + DIR range |")
    print("|---|---|---|---|")
    for device in sorted(set(devices), key=lambda d: (len(d), d)):
        m = test_means[devices == device]
        outside = np.mean((m < lo) | (m > hi))
        outside_dir = np.mean((m < lo_dir) | (m > hi_dir))
        print(f"| {device} | {np.abs(m.mean(axis=0) - reference).mean():.1f} | {100 * outside:.1f} % | "
              f"{100 * outside_dir:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
