"""Commands about datasets: synth."""
from __future__ import annotations

from pathlib import Path

from tinyasc.base.errors import TinyAscError
from tinyasc.data import synthetic


def add_parsers(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic scene dataset in TAU layout",
                       description="Generate tinyasc's built-in synthetic scene dataset (ten TAU classes, "
                                   "simulated devices, DCASE-style nested splits) into a new folder.")
    p.add_argument("out", help="output folder (must not exist)")
    p.add_argument("--clips", type=int, help="number of 1 s clips (default: the built-in size)")
    p.add_argument("--seed", type=int, default=0)


def cmd_synth(args) -> int:
    if Path(args.out).exists():
        raise TinyAscError(f"{args.out}: already exists; choose a new folder")
    out = synthetic.synthesize(args.out, n_clips=args.clips or synthetic.DEFAULT_CLIPS, seed=args.seed, progress=True)
    print(f"wrote synthetic TAU-layout dataset to {out}")
    return 0


COMMANDS = {"synth": cmd_synth}
