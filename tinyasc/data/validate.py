"""A dataset's file problems, found in one pass and reported together before training starts.

At scale a dataset has a few bad files; meeting them one crash (or one epoch) at a time wastes
hours, so every problem of every file is collected first:

- mislabelled: a split or test list gives a label other than meta.csv's (``TauFolder.read_list``);
- unusable: the file cannot be decoded, is empty, is truncated (its header declares more frames
  than it holds), or holds NaN/inf samples (found while the waveform cache decodes it, see
  ``tinyasc.audio.io``);
- wrongly sampled: its sample rate differs from the one most of the dataset's files share. It
  would be resampled without complaint, but a file at an odd rate comes from another source or
  carries a wrong header, and is worth a look.

``check`` raises one TinyAscError whose ``details`` hold one line per file, or, when skipping,
lets the caller leave those files out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyasc.data.cache import WaveCache
from tinyasc.data.tau import Clip, TauFolder
from tinyasc.base.errors import TinyAscError


def unusable(folder: TauFolder, clips: list[Clip], cache: WaveCache) -> dict[str, str]:
    """filename -> reason, for the clips the cache could not decode."""
    by_path = {str(folder.path(c.filename)): c.filename for c in clips}
    return {by_path[path]: reason for path, reason in cache.bad.items()}


def odd_sample_rates(filenames: list[str], rates: np.ndarray) -> dict[str, str]:
    """filename -> reason, for files whose own rate is not the most common one (rate 0: not decoded)."""
    rates = np.asarray(rates)
    decoded = rates[rates > 0]
    if decoded.size == 0:
        return {}
    values, counts = np.unique(decoded, return_counts=True)
    common = int(values[counts.argmax()])
    return {name: f"recorded at {rate} Hz, the rest of the dataset at {common} Hz"
            for name, rate in zip(filenames, rates.tolist()) if rate and rate != common}


SKIP_HINT = "fix or remove them, or rerun tinyasc train with --skip-bad-files to train on the rest"


def check(problems: dict[str, str], n_files: int, root: Path, skip_bad_files: bool, way_out: str = SKIP_HINT) -> None:
    """Raise one error listing every problem file, unless they are to be skipped. ``way_out``: what
    the user can do besides fixing the files (the command that met them decides)."""
    if not problems or skip_bad_files:
        return
    details = [f"{name}: {reason}" for name, reason in sorted(problems.items())]
    raise TinyAscError(f"{root}: {len(problems)} of {n_files} files have problems (listed below); fix them, or "
                       f"{way_out}. First: {details[0]}", details=details)
