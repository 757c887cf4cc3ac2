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
    if args.clips is not None and args.clips < synthetic.MIN_CLIPS:  # 0 is no request for the default size
        raise TinyAscError(f"--clips {args.clips}: need at least {synthetic.MIN_CLIPS} (one training and one test "
                           f"recording of {synthetic.SEGMENTS} clips)")
    if Path(args.out).exists():
        raise TinyAscError(f"{args.out}: already exists; choose a new folder")
    clips = synthetic.DEFAULT_CLIPS if args.clips is None else args.clips
    out = synthetic.synthesize(args.out, n_clips=clips, seed=args.seed, progress=True)
    print(f"wrote synthetic TAU-layout dataset to {out}")
    return 0


COMMANDS = {"synth": cmd_synth}
