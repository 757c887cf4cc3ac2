"""The ``tinyasc`` command line: one module per command group, every command a subcommand here.

Each group module has ``add_parsers(subparsers)`` and ``COMMANDS`` (name -> handler, ``args -> exit
status``). Handlers raise TinyAscError for anything a user got wrong; ``main`` prints its one line and
returns 2, without a traceback.
"""
from __future__ import annotations

import argparse
import sys

from tinyasc.base.errors import TinyAscError
from tinyasc.base.runtime import tune_runtime
from tinyasc.cli import compress, data, deploy, models, package, system, train

GROUPS = (train, models, data, compress, deploy, package, system)
COMMANDS = {name: handler for group in GROUPS for name, handler in group.COMMANDS.items()}

EPILOG = """examples:
  tinyasc train                                  train the DCASE 2024 baseline on the built-in synthetic set
  tinyasc train --data /data/TAU-urban-acoustic-scenes-2022-mobile-development --split 25 --out runs/s25
  tinyasc train --config dcase24_baseline --epochs 2 --set optim.lr=0.002
  tinyasc configs                                 the seed systems' recipes shipped with tinyasc
  tinyasc evaluate runs/s25                       metrics, per class and device, confusion matrix
  tinyasc predict runs/s25/checkpoints/best.ckpt clip.wav
  tinyasc complexity --model dcase24_baseline --precision fp16
  tinyasc system run 003_sub2_mini_segnet --out runs/003-sub2   a seed system end to end, every split
  tinyasc submit runs/003-sub2 --label Doe_Inst_task1_1 --author 'Jane;Doe;jane@inst.org;Inst' --out sub
  tinyasc package-2025 runs/s25 --label Doe_Inst_task1_1 --out package2025
  tinyasc download tau22 /data                    the development set from Zenodo, MD5-checked
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyasc", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="tinyasc: low-complexity acoustic scene classification (DCASE Task 1). Train, evaluate, "
                    "compress and deploy models small enough for a phone or a microcontroller.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    tune_runtime()  # before any big allocation: malloc settings apply only to later ones
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TinyAscError as exc:
        print(f"tinyasc: error: {exc}", file=sys.stderr)
        for line in exc.details[:200]:
            print(f"  {line}", file=sys.stderr)
        if len(exc.details) > 200:
            print(f"  ... and {len(exc.details) - 200} more", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("tinyasc: interrupted" + (f": {exc}" if str(exc) else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
