"""`ner-data`: convert, validate, describe and split NER datasets.

A thin command line over `convert`, `validate_folder`, `split_items` and the manifest. Bad input
never ends in a traceback: the message names the file, line and fix, and the exit status is 2
(1 when `validate` finds errors).

    ner-data convert --format conll --train a.conll --validation b.conll --output data/v1
    ner-data validate data/v1 [--json] [--repair-iob2]
    ner-data stats data/v1
    ner-data split all.jsonl --output data/v1 --ratios 0.8 0.1 0.1 --seed 13
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ner_lightning.console import error_boundary
from ner_lightning.contract import LABELS_FILE, SPLIT_FILES
from ner_lightning.data.convert import FORMATS, ConvertOptions, check_output_location, convert
from ner_lightning.data.hf_jsonl import canonical_jsonl, read_hf_jsonl
from ner_lightning.data.manifest import dataset_fingerprint
from ner_lightning.data.schemes import SCHEMES
from ner_lightning.data.spans import OVERLAP_RULES, SEGMENT_UNITS
from ner_lightning.data.split import DEFAULT_RATIOS, DEFAULT_SEED, split_items
from ner_lightning.data.textfile import read_text
from ner_lightning.data.validate import validate_folder
from ner_lightning.errors import DataError

#: Exit status of `validate` when the folder has errors.
EXIT_INVALID = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ner-data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    c = commands.add_parser("convert", help="convert input files into a validated canonical dataset folder")
    c.add_argument("--format", choices=FORMATS, required=True, help="input format")
    c.add_argument(
        "--train", type=Path, help="training input (split by --ratios when --validation is absent)"
    )
    c.add_argument("--input", type=Path, help="a single input to split by --ratios (same as --train alone)")
    c.add_argument("--validation", type=Path, help="validation input")
    c.add_argument("--test", type=Path, help="test input (optional)")
    c.add_argument("--output", type=Path, required=True, help="dataset folder to create")
    c.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    c.add_argument(
        "--scheme", choices=SCHEMES, default="iob2", help="tag scheme of the input (converted to IOB2)"
    )
    c.add_argument(
        "--repair",
        "--repair-iob2",
        dest="repair_iob2",
        action="store_true",
        help="repair ill-formed tags instead of failing: an orphan I-X becomes B-X; in BIOES/BILOU a tag that "
        "cannot continue an entity opens a new one (S-PER E-PER: two entities)",
    )
    c.add_argument(
        "--tag-column", type=int, default=-1, help="CoNLL tag column, 0-based (-1: last, 0: label-first)"
    )
    c.add_argument("--token-column", type=int, help="CoNLL word column (default: first that is not the tag)")
    c.add_argument("--label-names", type=Path, help="JSON list of labels that integer tag ids index into")
    c.add_argument("--tokens-field", default="tokens", help="JSONL field of the words")
    c.add_argument("--tags-field", default="ner_tags", help="JSONL field of the tags")
    c.add_argument("--overlap", choices=OVERLAP_RULES, default="longest", help="rule for overlapping spans")
    c.add_argument("--segment", choices=SEGMENT_UNITS, default="line", help="example unit for span documents")
    c.add_argument("--max-words", type=int, default=128, help="longest example cut from a span document")
    c.add_argument("--labels", nargs="+", help="span labels to keep (others are rejected as unknown)")
    c.add_argument("--drop-labels", nargs="*", default=["UNKNOWN"], help="span labels rejected as unknown")
    inclusive = c.add_mutually_exclusive_group()
    inclusive.add_argument("--end-inclusive", dest="end_inclusive", action="store_true", default=None)
    inclusive.add_argument("--end-exclusive", dest="end_inclusive", action="store_false")
    c.add_argument("--ratios", type=float, nargs="+", help="train validation [test] ratios when splitting")
    c.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split seed")
    c.add_argument("--json", action="store_true", help="print the conversion report as JSON")

    v = commands.add_parser("validate", help="check a dataset folder; exit 1 on errors")
    v.add_argument("folder", type=Path)
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.add_argument(
        "--repair",
        "--repair-iob2",
        dest="repair_iob2",
        action="store_true",
        help="rewrite orphan I-X tags as B-X in place",
    )

    s = commands.add_parser(
        "stats", help="sentences, tokens and entities per type per split, and the fingerprint"
    )
    s.add_argument("folder", type=Path)
    s.add_argument("--json", action="store_true", help="print as JSON")

    p = commands.add_parser("split", help="split one canonical JSONL file into a dataset folder")
    p.add_argument("input", type=Path, help="canonical JSONL file (tokens + string ner_tags)")
    p.add_argument("--output", type=Path, required=True, help="dataset folder to create")
    p.add_argument(
        "--ratios", type=float, nargs="+", default=list(DEFAULT_RATIOS), help="train validation [test]"
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split seed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser


@error_boundary("ner-data")
def main(argv: Sequence[str]) -> int:
    """Run `ner-data` with `argv` (default: the process arguments) and return the exit status.

    Errors are answered by the shared boundary (`ner_lightning.console`): bad input exits 2 with
    the file, line and fix; `--debug` shows the traceback.
    """
    args = _parser().parse_args(argv)
    return _COMMANDS[args.command](args)


def _convert(args: argparse.Namespace) -> int:
    if args.input is not None and (args.train is not None or args.validation is not None):
        raise DataError(
            "--input is for a single file to split",
            field="input",
            fix="use --input alone or --train/--validation",
        )
    inputs = {
        split: path
        for split, path in (
            ("train", args.train or args.input),
            ("validation", args.validation),
            ("test", args.test),
        )
        if path is not None
    }
    label_names = None
    if args.label_names is not None:
        try:
            label_names = json.loads(read_text(args.label_names))
        except json.JSONDecodeError as error:
            raise DataError(
                f"malformed JSON: {error.msg}",
                path=args.label_names,
                line=error.lineno,
                fix="write a JSON list of label strings",
            ) from None
        if not isinstance(label_names, list) or not all(isinstance(x, str) for x in label_names):
            raise DataError(
                "expected a JSON list of strings",
                path=args.label_names,
                fix="write a JSON list of label strings",
            )
    options = ConvertOptions(
        format=args.format,
        scheme=args.scheme,
        repair_iob2=args.repair_iob2,
        tag_column=args.tag_column,
        token_column=args.token_column,
        label_names=tuple(label_names) if label_names is not None else None,
        tokens_field=args.tokens_field,
        tags_field=args.tags_field,
        overlap=args.overlap,
        segment=args.segment,
        max_words=args.max_words,
        allowed_labels=tuple(args.labels) if args.labels else None,
        drop_labels=tuple(args.drop_labels),
        end_inclusive=args.end_inclusive,
        ratios=tuple(args.ratios) if args.ratios else None,
        seed=args.seed,
    )
    result = convert(inputs, args.output, options, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(result.report, ensure_ascii=False, sort_keys=True, indent=2))
        return 0
    print(result.validation.summary_table())
    spans = result.report["spans"]
    if spans is not None:
        print(
            f"spans: {spans['total_spans']} total, {spans['kept_spans']} kept, {spans['dropped_spans']} dropped "
            f"{spans['dropped_by_reason']} (see rejects.jsonl)"
        )
        if spans["stripped_label_prefixes"]:
            print(
                f"stripped the B-/I- prefix of {spans['stripped_label_prefixes']} span label(s) "
                "(span labels name entity types: LOC, not B-LOC)"
            )
    if result.report["repaired_iob2_tags"]:
        print(f"repaired {result.report['repaired_iob2_tags']} ill-formed tag sequence(s) (--repair)")
    for issue in result.validation.warnings:
        print(issue)
    print(f"wrote {result.folder} (fingerprint {result.report['fingerprint']})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    report = validate_folder(args.folder, repair_iob2=args.repair_iob2)
    print(report.to_json() if args.json else report.format_text(), end="\n" if not args.json else "")
    return 0 if report.ok else EXIT_INVALID


def _stats(args: argparse.Namespace) -> int:
    report = validate_folder(args.folder)
    if not report.splits:
        raise DataError("no split could be read", path=args.folder, fix="run `ner-data validate` for details")
    fingerprint = dataset_fingerprint(args.folder) if report.ok else None
    if args.json:
        body = {"fingerprint": fingerprint, "labels": report.labels, "splits": report.to_dict()["splits"]}
        print(json.dumps(body, ensure_ascii=False, sort_keys=True, indent=2))
    else:
        print(report.summary_table())
        print(f"labels: {len(report.labels)}  fingerprint: {fingerprint or 'n/a (folder has errors)'}")
    return 0


def _split(args: argparse.Namespace) -> int:
    check_output_location(args.output, [args.input], overwrite=args.overwrite)
    sentences = read_hf_jsonl(args.input)
    if not sentences:
        raise DataError("input has no sentences", path=args.input, fix="pass a file with tagged sentences")
    splits = split_items(sentences, None, args.ratios, args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        # Written as a canonical folder, then converted so the output gets labels, manifest and report.
        staged = Path(scratch)
        for split, items in splits.items():
            (staged / SPLIT_FILES[split]).write_text(canonical_jsonl(items), encoding="utf-8", newline="\n")
        inputs = {split: staged / SPLIT_FILES[split] for split in splits}
        result = convert(inputs, args.output, ConvertOptions(format="hf-jsonl"), overwrite=args.overwrite)
    print(result.validation.summary_table())
    print(f"wrote {result.folder} (fingerprint {result.report['fingerprint']}); labels in {LABELS_FILE}")
    return 0


_COMMANDS = {"convert": _convert, "validate": _validate, "stats": _stats, "split": _split}

if __name__ == "__main__":
    sys.exit(main())
