"""Checks of a model folder's serving settings before `OnnxTagger` uses them.

`ner_model.json` and `tokenizer.json` are plain files a user can edit or damage. A corrupt
tokenizer made `tokenizers` raise a bare `Exception: EOF while parsing`, and a tampered
`max_length` failed deep in the windowing code (too small) or not at all until a long input hit
the model's position limit (too large). Here each becomes a `ModelError` naming the file, the
field and the fix. No torch: serving must not need it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from ner_lightning.contract import MODEL_METADATA_FILE
from ner_lightning.errors import ModelError

#: Tokenizer file the predictor loads (`ner_lightning.onnx.predictor.TOKENIZER_FILE`).
TOKENIZER_FILE: Final = "tokenizer.json"
#: Tokenizer settings file written by `save_pretrained`, holding `model_max_length`.
TOKENIZER_CONFIG_FILE: Final = "tokenizer_config.json"
#: `model_max_length` at or above this is transformers' "no limit" placeholder.
_NO_LIMIT: Final = 10**8
_FIX: Final = (
    "restore the file from the export (re-run ner-convert or the ONNX export); do not edit it by hand"
)


def check_serving_settings(model_dir: str | Path) -> None:
    """Refuse a model folder whose tokenizer or window settings cannot serve.

    Checks: `tokenizer.json` loads; `ner_model.json` holds integer `max_length` and `stride` with
    room for at least one subword after the special tokens, `0 <= stride <` that room, and
    `max_length` no larger than the tokenizer's `model_max_length` (when it records one).

    Args:
        model_dir: The model folder.

    Raises:
        ModelError: The file and field that are wrong, and the fix.
    """
    folder = Path(model_dir)
    metadata_path = folder / MODEL_METADATA_FILE
    metadata = _json_object(metadata_path)
    if metadata is None:
        return  # missing or malformed: `read_model_folder` reports it with its own message
    tokenizer_path = folder / TOKENIZER_FILE
    if tokenizer_path.is_file():
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(tokenizer_path))
        except Exception as error:  # tokenizers raises a bare Exception for any parse problem
            raise ModelError(
                f"the tokenizer cannot be loaded: {str(error).strip() or type(error).__name__}",
                path=tokenizer_path,
                fix=_FIX,
            ) from None
    max_length = _integer(metadata, "max_length", metadata_path)
    stride = _integer(metadata, "stride", metadata_path)
    specials = sum(len(metadata.get(key) or []) for key in ("prefix_ids", "suffix_ids"))
    room = max_length - specials
    if room < 1:
        raise ModelError(
            f"max_length {max_length} leaves no room for words after {specials} special tokens",
            path=metadata_path,
            field="max_length",
            fix=_FIX,
        )
    if not 0 <= stride < room:
        raise ModelError(
            f"stride {stride} must be >= 0 and smaller than max_length minus the special tokens ({room})",
            path=metadata_path,
            field="stride",
            fix=_FIX,
        )
    limit = (_json_object(folder / TOKENIZER_CONFIG_FILE) or {}).get("model_max_length")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit < _NO_LIMIT and max_length > limit:
        raise ModelError(
            f"max_length {max_length} exceeds the model's limit of {limit} positions "
            f"({TOKENIZER_CONFIG_FILE} model_max_length); long inputs would fail",
            path=metadata_path,
            field="max_length",
            fix=_FIX,
        )


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _integer(metadata: dict[str, Any], key: str, path: Path) -> int:
    value = metadata.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelError(f"{key} must be an integer, found {value!r}", path=path, field=key, fix=_FIX)
    return value
