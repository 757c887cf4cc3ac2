"""Commands that package models for the DCASE 2025 inference harness: package-2025."""
from __future__ import annotations

from tinyasc.base.tables import format_table
from tinyasc.cli.common import show
from tinyasc.deploy.package2025 import write_package


def add_parsers(sub) -> None:
    p = sub.add_parser("package-2025", help="DCASE 2025 inference package for the official harness",
                       description="Write an installable package <Lastname_Inst_task1> with the module "
                                   "<label> (load_model, load_inputs, get_model_for_device, predict), the "
                                   "models, dummy.wav and test.csv, as the DCASE 2025 Task 1 harness "
                                   "(test_complexity.py, evaluate_submission.py) imports it. MODEL is a run "
                                   "folder or model file (one model for all devices), a YAML map {general: "
                                   "PATH, devices: {a: PATH, ...}} or a folder of general.pt and <device>.pt.")
    p.add_argument("model", help="run folder, model file, device model map (YAML) or device model folder")
    p.add_argument("--label", required=True, help="submission label with its index, e.g. Lastname_Inst_task1_1")
    p.add_argument("--out", default="package2025", help="project folder to write (default ./package2025)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def cmd_package_2025(args) -> int:
    info = write_package(args.model, args.label, args.out)
    rows = []
    for name, h in info["harness"].items():
        c = info["complexity"][name]
        rows.append([name, c["precision"], f"{h['bytes']:,}", f"{h['macs']:,}", "yes" if h["fits"] else "no",
                     f"{c['macs']:,}"])
    text = "\n".join([
        format_table(["model", "precision", "harness bytes", "harness MACs", "fits", "tinyasc MACs"], rows, left=2),
        f"wrote {info['module']} and its models in {info['out']}",
        f"next: pip install {info['out']}; in the harness: python test_complexity.py --submission_name "
        f"{info['package']} --submission_index {info['index']}"])
    show(args, info, text)
    return 0


COMMANDS = {"package-2025": cmd_package_2025}
