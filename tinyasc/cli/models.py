"""Commands about the model zoo and the recipes: models, complexity, configs."""
from __future__ import annotations

from tinyasc import config as cfgmod
from tinyasc.base.tables import format_table
from tinyasc.cli.common import show
from tinyasc.complexity import measure
from tinyasc.complexity.table import format_model_table, model_table
from tinyasc.modelfile.int8 import int8_measurement
from tinyasc.models import create_model, input_shape


def add_parsers(sub) -> None:
    p = sub.add_parser("complexity", help="parameters, bytes and MACs of a model, against the DCASE limits",
                       description="DCASE counting (torchinfo, as NeSsi): parameters, parameter bytes at a "
                                   "precision, MACs for a 1 s clip through the model's own front end; limits "
                                   "128,000 bytes and 30,000,000 MACs.")
    p.add_argument("--model", required=True)
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("models", help="list every registered model with its measured and reported complexity")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("configs", help="list the recipes shipped with tinyasc (use with train --config NAME)")
    p.add_argument("--json", action="store_true")


def cmd_complexity(args) -> int:
    shape = input_shape(args.model)
    c = measure(create_model(args.model, in_channels=shape[1]), shape, args.precision)
    text = (f"model          {args.model}\ninput          {tuple(c.input_shape)}\nparameters     {c.params:,}\n"
            f"bytes ({c.precision})   {c.bytes:,}  (limit 128,000: {'ok' if c.fits_bytes else 'over'})\n"
            f"MACs per 1 s   {c.macs:,}  (limit 30,000,000: {'ok' if c.fits_macs else 'over'})\n"
            f"fits DCASE     {'yes' if c.fits else 'no'}")
    show(args, {"model": args.model, **c.to_dict()}, text)
    return 0


def cmd_models(args) -> int:
    rows = model_table(int8_measurement)
    show(args, rows, format_model_table(rows))
    return 0


def cmd_configs(args) -> int:
    recipes = cfgmod.list_recipes()
    show(args, recipes, format_table(["recipe", "description"], [[n, d] for n, d in recipes.items()]))
    return 0


COMMANDS = {"complexity": cmd_complexity, "models": cmd_models, "configs": cmd_configs}
