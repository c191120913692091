"""`ner-predict`: tag text or JSONL with an ONNX model folder and write JSONL (no torch needed).

Input, one document per line:
- text (`--format text`, or a file not ending in `.jsonl`): each line is a raw text;
- JSONL (`--format jsonl`, or a `.jsonl` file): each line is `{"text": "..."}` or
  `{"tokens": [...]}`; other keys (e.g. `id`) are copied to the output line.
`--text` tags the given strings instead of a file. Output: one JSON object per input line with
`tokens` (word, tag, character offsets) and `entities`.

Exit codes: 0 done, 2 bad input (unreadable or non-UTF-8 file, malformed JSON line, bad model folder,
an output that is a folder or the input itself, `--threads` < 0), 1 an unexpected error (the
traceback goes to a log file; `--debug` prints it).
Blank documents are answered with no entities and a warning on stderr that names the line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from ner_lightning.console import error_boundary
from ner_lightning.errors import DataError
from ner_lightning.onnx.folder_checks import check_serving_settings
from ner_lightning.onnx.predictor import DEFAULT_BATCH_SIZE, DEFAULT_TOKEN_BUDGET, OnnxTagger

#: Documents tagged per call of the tagger (each may hold many windows).
_DOCUMENTS_PER_CALL = 64


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of `ner-predict`."""
    parser = argparse.ArgumentParser(
        prog="ner-predict", description="Tag text with an ONNX NER model folder."
    )
    parser.add_argument(
        "--model", required=True, help="model folder (model.onnx, tokenizer, labels.json, ner_model.json)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="input file ('-' for stdin), one document per line")
    source.add_argument("--text", action="append", help="a text to tag (repeatable)")
    parser.add_argument(
        "--format",
        choices=["auto", "text", "jsonl"],
        default="auto",
        help="input format (auto: JSONL for a .jsonl file or when the first non-blank line is a JSON object)",
    )
    parser.add_argument(
        "--output", default="-", help="JSONL output file ('-' for stdout; files are replaced atomically)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"most windows per onnxruntime call (default: 1 for a dynamic int8 model, so a text's entities "
        f"never depend on the other texts of the call; {DEFAULT_BATCH_SIZE} otherwise)",
    )
    parser.add_argument(
        "--token-budget",
        type=int,
        default=DEFAULT_TOKEN_BUDGET,
        help="most padded tokens (windows x longest window) per onnxruntime call",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="onnxruntime intra-op threads (0: every core this process may use)",
    )
    return parser


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """`(line number, text)` of a UTF-8 file or stdin, without line endings.

    Raises:
        DataError: The file is missing or not UTF-8 (the error names the line and the byte).
    """
    if path == "-":
        handle = sys.stdin.buffer
    else:
        check_input_path(path)
        handle = open(path, "rb")  # noqa: SIM115 - closed below; bytes so a bad line can be located
    try:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1})",
                    path=path,
                    line=number,
                    fix="convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)",
                ) from error
            yield number, text.removeprefix("\ufeff") if number == 1 else text
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def parse_document(number: int, line: str, jsonl: bool, path: str) -> dict[str, Any] | None:
    """One input document (`{"text": ...}` or `{"tokens": [...]}` plus passthrough keys); None for a blank JSONL line."""
    line = line.rstrip("\r\n")
    if not jsonl:
        return {"text": line}
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(
            f"not valid JSON: {error.msg}", path=path, line=number, fix="write one JSON object per line"
        ) from error
    if not isinstance(record, dict) or not (
        isinstance(record.get("text"), str) or _is_token_list(record.get("tokens"))
    ):
        raise DataError(
            'each line needs "text" (a string) or "tokens" (a list of strings)',
            path=path,
            line=number,
            field="text",
            fix='write e.g. {"id": 1, "text": "EU rejects German call"}',
        )
    return record


def _is_token_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, str) for t in value)


def tag_documents(
    tagger: OnnxTagger, documents: Sequence[tuple[int, dict[str, Any]]], warn: TextIO
) -> list[dict[str, Any]]:
    """Tag parsed documents; blank ones get an empty answer and a warning naming their line."""
    outputs: list[dict[str, Any]] = []
    texts = [(n, d) for n, d in documents if isinstance(d.get("text"), str)]
    token_docs = [(n, d) for n, d in documents if not isinstance(d.get("text"), str)]
    results: dict[int, dict[str, Any]] = {}
    for (number, record), tagged in zip(texts, tagger.predict([d["text"] for _, d in texts]), strict=True):
        results[number] = {**record, **tagged.to_json()}
    for (number, record), tagged in zip(
        token_docs, tagger.predict_tokens([d["tokens"] for _, d in token_docs]), strict=True
    ):
        results[number] = {**record, **tagged.to_json()}
    for number, record in documents:
        result = results[number]
        if not result["tokens"]:
            kind = "empty" if not (record.get("text") or record.get("tokens")) else "whitespace-only"
            print(f"ner-predict: line {number}: {kind} document, answered with no entities", file=warn)
            result["warning"] = f"{kind} document"
        outputs.append(result)
    return outputs


def run(args: argparse.Namespace, out: TextIO, warn: TextIO) -> int:
    """Tag every document of the parsed arguments and write JSONL lines to `out`."""
    tagger = OnnxTagger(
        args.model, batch_size=args.batch_size, threads=args.threads, token_budget=args.token_budget
    )
    if args.text is not None:
        lines: Iterator[tuple[int, str]] = iter(enumerate(args.text, 1))
        jsonl, path = False, "--text"
    else:
        path = args.input
        lines = read_lines(path)
        if args.format == "auto":
            lines, jsonl = _detect_jsonl(path, lines)
        else:
            jsonl = args.format == "jsonl"
    pending: list[tuple[int, dict[str, Any]]] = []
    for number, line in lines:
        document = parse_document(number, line, jsonl, path)
        if document is not None:
            pending.append((number, document))
        if len(pending) == _DOCUMENTS_PER_CALL:
            _write(out, tag_documents(tagger, pending, warn))
            pending = []
    if pending:
        _write(out, tag_documents(tagger, pending, warn))
    return 0


def _detect_jsonl(path: str, lines: Iterator[tuple[int, str]]) -> tuple[Iterator[tuple[int, str]], bool]:
    """`--format auto`: a `.jsonl` file is JSONL; other input (stdin too) is JSONL when its first
    non-blank line is a JSON object. Returns the lines (the peeked ones included) and the decision."""
    if path.endswith(".jsonl"):
        return lines, True
    peeked: list[tuple[int, str]] = []
    for number, line in lines:
        peeked.append((number, line))
        if line.strip():
            break
    first = peeked[-1][1].strip() if peeked else ""
    try:
        jsonl = first.startswith("{") and isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        jsonl = False
    return itertools.chain(peeked, lines), jsonl


def _write(out: TextIO, results: list[dict[str, Any]]) -> None:
    for result in results:
        out.write(json.dumps(result, ensure_ascii=False) + "\n")


def check_input_path(path: str) -> None:
    """Refuse an `--input` that is missing or a folder (stdin, `-`, is always accepted).

    Raises:
        DataError: What the path is, and the fix.
    """
    if path == "-":
        return
    if Path(path).is_dir():
        raise DataError(
            "the input is a folder, not a file", path=path, field="input", fix="pass a text or JSONL file"
        )
    if not Path(path).is_file():
        raise DataError("input file does not exist", path=path, field="input", fix="check the path")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse option values that cannot work, before the model is loaded.

    `--threads` must be >= 0 and `--batch-size` >= 1; `--input` must be a file (or `-`);
    `--output` must not be a folder, nor the input file itself (it would be overwritten).

    Raises:
        DataError: The option, what is wrong and the fix.
    """
    if args.threads < 0:
        raise DataError(
            f"--threads must be >= 0, got {args.threads}",
            field="threads",
            fix="pass 0 (all cores) or a positive number of threads",
        )
    if args.batch_size is not None and args.batch_size < 1:
        raise DataError(
            f"--batch-size must be >= 1, got {args.batch_size}", field="batch_size", fix="pass e.g. 32"
        )
    if args.input is not None:
        check_input_path(args.input)
    if args.output == "-":
        return
    target = Path(args.output)
    if target.is_dir():
        raise DataError(
            "the output is a folder; --output takes a file name",
            path=target,
            field="output",
            fix=f"pass a file, e.g. {target / 'predictions.jsonl'}",
        )
    if args.input not in (None, "-") and _same_file(Path(args.input), target):
        raise DataError(
            "the output is the input file; writing it would destroy the input",
            path=target,
            field="output",
            fix="write the predictions to another file",
        )
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(
                    f"the output's folder {parent} is a file",
                    path=target,
                    field="output",
                    fix="choose another path",
                )
            break


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


@error_boundary("ner-predict")
def main(argv: Sequence[str]) -> int:
    """Entry point of `ner-predict`; returns the exit code.

    Errors are answered by the shared boundary (`ner_lightning.console`): bad input or a bad
    model folder exits 2 with the file, line and fix; `--debug` shows the traceback.
    """
    args = build_parser().parse_args(argv)
    check_arguments(args)
    check_serving_settings(args.model)
    if args.output == "-":
        return run(args, sys.stdout, sys.stderr)
    target = Path(args.output)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            code = run(args, out, sys.stderr)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return code


if __name__ == "__main__":
    sys.exit(main())
