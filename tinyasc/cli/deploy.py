"""Commands that put models to use: predict, export, timeline, submit."""
from __future__ import annotations


from tinyasc.base.errors import TinyAscError
from tinyasc.base.files import check_output_file
from tinyasc.cli.common import add_common, show
from tinyasc.data.build import datamodule_for
from tinyasc.deploy.onnx_export import OnnxPredictor, check_onnx, export_onnx
from tinyasc.deploy.predict import predict_files
from tinyasc.deploy.submission import write_submission
from tinyasc.deploy.timeline import output_paths, plot_timeline, scene_timeline, write_csv
from tinyasc.modelfile import load_predictor, predictor_from_record, read_model_file, run_dir_of


def add_parsers(sub) -> None:
    p = sub.add_parser("predict", help="scene label and class probabilities for audio files",
                       description="Cut each file into clip-length windows, average the windows' logits and "
                                   "print the scene label with the top three class probabilities.")
    p.add_argument("checkpoint", help="run folder, checkpoint, or a quantized/pruned/ensemble model file")
    p.add_argument("files", nargs="+", help="audio files (wav/flac, any rate and channel count)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("export", help="ONNX export of a float or int8 model, checked with ONNX Runtime",
                       description="Export the network (log-mel features in, logits out) to ONNX and compare "
                                   "ONNX Runtime with PyTorch on the test clips: float logits within 1e-4 x "
                                   "max(1, |logit|), int8 within 3 more output quantisation steps, same predictions "
                                   "except on near ties.")
    p.add_argument("model", help="run folder, checkpoint or tinyasc model file")
    p.add_argument("--out", help="ONNX file (default RUN/compressed/<name>.onnx)")
    p.add_argument("--no-check", action="store_true", help="skip the comparison on the test set")
    add_common(p)

    p = sub.add_parser("timeline", help="per-second scene labels of a long recording: CSV and PNG",
                       description="Classify consecutive clip-length windows of an audio file; optional moving "
                                   "average of the probabilities over --smooth windows.")
    p.add_argument("model", help="run folder, checkpoint or tinyasc model file")
    p.add_argument("file", help="audio file of any length")
    p.add_argument("--smooth", type=int, default=1, help="odd number of windows to average (default 1: none)")
    p.add_argument("--out-dir", default=".", help="folder for <file>.timeline.csv and .png (default .)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("submit", help="DCASE 2024 submission package: outputs per split, meta YAML, zip",
                       description="One model per training split 5, 10, 25, 50, 100 (read from each model's config, "
                                   "or given as S=PATH, or a system folder's results.json final_models), each within "
                                   "the DCASE limits. Writes OUT/task1/<label>/ with <label>.output.split_<S>.csv and "
                                   "<label>.meta.yaml (every field of the official form) and OUT/<Lastname>_<Inst>"
                                   "_task1.zip, the layout the official validator and the upload expect.")
    p.add_argument("models", nargs="+", help="run folders / model files (one per split), S=PATH, or a system folder")
    p.add_argument("--label", required=True, help="submission label, e.g. Lastname_Inst_task1_1")
    p.add_argument("--out", default="submission", help="output folder (default ./submission)")
    p.add_argument("--eval-data", help="evaluation set folder to predict (default: the development test set)")
    p.add_argument("--name", help="system name for the meta file")
    p.add_argument("--abbreviation", help="system abbreviation, at most 10 characters (default: from the label)")
    p.add_argument("--author", action="append", default=[],
                   help="'Firstname;Lastname;email;Affiliation' (repeatable; the first is the corresponding author "
                        "unless another ends in ';corresponding')")
    p.add_argument("--describe", action="append", default=[], metavar="FIELD=TEXT",
                   help="set a system.description field, e.g. external_data_usage='pre-trained model' (repeatable)")
    p.add_argument("--external-dataset", action="append", default=[], metavar="'NAME;URL;LENGTH'",
                   help="an external dataset used (repeatable)")
    p.add_argument("--source-code", help="URL of the system's source code")
    p.add_argument("--report", help="technical report PDF to put into the zip")
    p.add_argument("--allow-over-limit", action="store_true",
                   help="write the package even when a model exceeds 128,000 parameter bytes or 30 M MACs")
    add_common(p)


def cmd_predict(args) -> int:
    results = predict_files(load_predictor(args.checkpoint), args.files)
    text = "\n".join(f"{r['file']}\t{r['scene_label']}\t" + "  ".join(
        f"{c} {p:.2f}" for c, p in sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]) for r in results)
    show(args, results, text)
    return 0


def cmd_export(args) -> int:
    record, _, file = read_model_file(args.model)
    predictor = predictor_from_record(record, str(file))
    out = export_onnx(predictor, check_output_file(args.out or run_dir_of(file) / "compressed" / f"{file.stem}.onnx"))
    info = {"output": str(out), "bytes_on_disk": out.stat().st_size}
    text = f"wrote {out} ({out.stat().st_size:,} bytes)"
    if not args.no_check:
        dm = datamodule_for(predictor.config, args.data, "test", not args.no_progress)
        check = check_onnx(predictor, OnnxPredictor(predictor, out), dm.test_dataloader())
        info["check"] = check
        text += (f"\nONNX Runtime vs PyTorch on {check['clips']} test clips: max |logit difference| "
                 f"{check['max_abs_diff']:.3g} (tolerance {check['tolerance']:.3g}: {check['tolerance_rule']}), "
                 f"{check['prediction_mismatches']} differing predictions "
                 f"({check['decisive_mismatches']} outside near ties)")
        if not check["ok"]:
            show(args, info, text)
            raise TinyAscError(f"{out}: ONNX Runtime disagrees with PyTorch beyond the tolerance")
    show(args, info, text)
    return 0


def cmd_timeline(args) -> int:
    csv_path, png_path = output_paths(args.file, args.out_dir)  # a bad --out-dir fails before any work
    timeline = scene_timeline(load_predictor(args.model), args.file, smooth=args.smooth)
    write_csv(timeline, csv_path)
    plot_timeline(timeline, png_path)
    info = {"file": args.file, "csv": str(csv_path), "png": str(png_path), "windows": len(timeline["labels"]),
            "labels": timeline["labels"]}
    segments, start = [], 0
    labels = timeline["labels"]
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            segments.append(f"{timeline['start'][start]:7.1f} s  {labels[start]} ({i - start} windows)")
            start = i
    show(args, info, "\n".join(segments) + f"\nwrote {csv_path} and {png_path}")
    return 0


def cmd_submit(args) -> int:
    info = write_submission(args.models, args.label, args.out, args.eval_data, args.data, args.name, args.author,
                            abbreviation=args.abbreviation, describe=args.describe,
                            external_datasets=args.external_dataset, source_code=args.source_code,
                            report=args.report, allow_over_limit=args.allow_over_limit, progress=not args.no_progress)
    lines = []
    for s, r in info["results"].items():
        split, c = s.split("_")[1], info["complexity"][int(s.split("_")[1])]
        lines.append(f"split {split:>3}: macro accuracy {r['overall']['accuracy']:.2f} %, macro log loss "
                     f"{r['overall']['logloss']:.3f} ({info['scored_by'][int(split)]}); {c['bytes']:,} bytes "
                     f"({c['precision']}), {c['macs']:,} MACs{'' if c['fits'] else ' OVER THE DCASE LIMITS'}")
    lines.append(f"predictions on the {info['evaluated_on']}")
    if args.eval_data is None:
        lines.append("note: the challenge scores the evaluation set; pass --eval-data for a submittable package")
    lines += [f"wrote {p}" for p in info["outputs"].values()] + [f"wrote {info['meta']}"]
    lines.append(f"wrote {info['zip']} (task1/{', task1/'.join(info['zip_labels'])})")
    if info["report"] is None:
        lines.append("no technical report: the challenge wants a PDF in the package (the validator does not "
                     "check it); add it with --report")
    show(args, info, "\n".join(lines))
    return 0


COMMANDS = {"predict": cmd_predict, "export": cmd_export, "timeline": cmd_timeline, "submit": cmd_submit}
