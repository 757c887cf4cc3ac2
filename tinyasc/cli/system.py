"""Commands that run whole seed systems: system run, system list."""
from __future__ import annotations

import re

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError
from tinyasc.base.tables import format_table
from tinyasc.systems.run import run_system
from tinyasc.systems.spec import list_specs

MEMBER_SET = re.compile(r"^([a-z][a-z0-9_]*):(.+)$")


def add_parsers(sub) -> None:
    p = sub.add_parser("system", help="run a seed system end to end: train, compress, ensemble, results table",
                       description="Run a seed submission as a resumable pipeline: train every member, compress "
                                   "it as its report did (pruning, QAT, post-training int8, fp16), build the "
                                   "ensemble, and write results.md/json/png in the system folder. Running the "
                                   "same command again keeps every finished stage whose inputs are unchanged.")
    commands = p.add_subparsers(dest="system_command", metavar="{run,list}")
    commands.required = True
    r = commands.add_parser("run", help="run (or continue) a system",
                            description="Stages go into OUT/split<S>/<stage>/; a stage is redone only when its "
                                        "config or input files changed, or it was left half-written.")
    r.add_argument("spec", help="system name from `tinyasc system list` or a spec YAML file")
    r.add_argument("--data", help="dataset folder in TAU layout (default: the built-in synthetic set)")
    r.add_argument("--splits", help="training splits, e.g. 5,10,25,50,100 (default: the spec's)")
    r.add_argument("--out", help="system folder (default systems/<name>)")
    r.add_argument("--epochs", type=int, help="epochs of every training stage: members, QAT, each pruning fine-tune")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="[MEMBER:]KEY=VALUE",
                   help="override a config key of every member, or of one (e.g. --set student:trainer.epochs=5)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    commands.add_parser("list", help="the seed systems shipped with tinyasc")


def parse_splits(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        splits = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        splits = []
    if not splits or not set(splits) <= set(cfgmod.KNOWN_SPLITS):
        raise TinyAscError(f"--splits {text!r}: give a comma-separated list of {', '.join(map(str, cfgmod.KNOWN_SPLITS))}")
    return splits


def cmd_system(args) -> int:
    if args.system_command == "list":
        print(format_table(["system", "reproduces"], [[n, text] for n, text in list_specs().items()], left=2))
        return 0
    overrides, per_member = [], {}
    for text in args.overrides:
        match = MEMBER_SET.match(text)
        if match:  # MEMBER:KEY=VALUE (a key never holds a colon before its first dot)
            per_member.setdefault(match.group(1), []).append(cfgmod.parse_override(match.group(2)))
        else:
            overrides.append(cfgmod.parse_override(text))
    results = run_system(args.spec, args.out, args.data, parse_splits(args.splits), overrides, per_member,
                         args.epochs, progress=not args.no_progress)
    rows = [[f"{s} %", f"{f['macro_accuracy']:.2%}", f"{f['log_loss']:.3f}", f"{f['complexity']['bytes']:,}",
             f"{f['complexity']['macs']:,}", "yes" if f["complexity"]["fits"] else "no"]
            for s, f in results["final"].items()]
    print(format_table(["split", "macro accuracy", "log loss", "bytes", "MACs", "fits"], rows))
    return 0


COMMANDS = {"system": cmd_system}
