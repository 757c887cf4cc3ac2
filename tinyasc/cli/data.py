"""Commands about datasets: synth, download."""
from __future__ import annotations

from pathlib import Path

from tinyasc.base.errors import TinyAscError
from tinyasc.data import synthetic
from tinyasc.data.download import DATASETS, ZENODO, download


def add_parsers(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic scene dataset in TAU layout",
                       description="Generate tinyasc's built-in synthetic scene dataset (ten TAU classes, "
                                   "simulated devices, DCASE-style nested splits) into a new folder.")
    p.add_argument("out", help="output folder (must not exist)")
    p.add_argument("--clips", type=int, help="number of 1 s clips (default: the built-in size)")
    p.add_argument("--seed", type=int, default=0)

    names = "; ".join(f"{n}: {s.title}" for n, s in DATASETS.items())
    p = sub.add_parser("download", help="download a TAU dataset of DCASE Task 1 from Zenodo (resumable, MD5-checked)",
                       description=f"Fetch a dataset's archives into DIR/downloads (an interrupted download "
                                   f"continues where it stopped), check their MD5 sums, unpack them into DIR and "
                                   f"verify the TAU layout (audio/, meta.csv, evaluation_setup/). Datasets: {names}.")
    p.add_argument("dataset", metavar="NAME", help=", ".join(DATASETS))
    p.add_argument("out", metavar="DIR", help="folder to download and unpack into (the dataset lands in a subfolder)")
    p.add_argument("--record", help="Zenodo record id (needed where tinyasc does not know the record)")
    p.add_argument("--mirror", default=ZENODO, help=f"a server with Zenodo's paths (default {ZENODO})")
    p.add_argument("--delete-archives", action="store_true", help="delete each archive once it is unpacked")
    p.add_argument("--no-progress", action="store_true")


def cmd_synth(args) -> int:
    if args.clips is not None and args.clips < synthetic.MIN_CLIPS:  # 0 is no request for the default size
        raise TinyAscError(f"--clips {args.clips}: need at least {synthetic.MIN_CLIPS} (one training and one test "
                           f"recording of {synthetic.SEGMENTS} clips)")
    if Path(args.out).exists():
        raise TinyAscError(f"{args.out}: already exists; choose a new folder")
    clips = synthetic.DEFAULT_CLIPS if args.clips is None else args.clips
    out = synthetic.synthesize(args.out, n_clips=clips, seed=args.seed, progress=True)
    print(f"wrote synthetic TAU-layout dataset to {out}")
    return 0


def cmd_download(args) -> int:
    folder = download(args.dataset, args.out, server=args.mirror, record=args.record, progress=not args.no_progress,
                      keep_archives=not args.delete_archives)
    print(f"dataset ready: {folder}")
    return 0


COMMANDS = {"synth": cmd_synth, "download": cmd_download}
