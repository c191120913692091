"""Tamper evidence for the quantization record of an int8 model folder.

`ner-convert` records the chosen recipe, the nodes kept in fp32, the candidates table and the
gate's figures under `quantization` in `ner_model.json`, and seals them: `integrity` holds the
sha256 of `model.onnx` and the sha256 of the canonical JSON of the `quantization` section bound to
that graph hash. `OnnxTagger` checks the seal when it loads a folder, so a recipe edited by hand
(or a graph swapped under a record) is refused with a clear error instead of serving a model
whose record lies. It is evidence against edits and mix-ups, not a signature: whoever rewrites
both the record and the seal defeats it. Pure Python (hashlib): serving needs no onnx package.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ner_lightning.contract import MODEL_METADATA_FILE
from ner_lightning.data.manifest import file_sha256
from ner_lightning.errors import ModelError

#: Key of the seal in `ner_model.json`.
INTEGRITY_KEY = "integrity"
#: Key of the sealed section.
QUANTIZATION_KEY = "quantization"


def record_sha256(quantization: Mapping[str, Any], model_sha256: str) -> str:
    """sha256 of the canonical JSON of the quantization record bound to the graph's sha256."""
    canonical = json.dumps(
        {"quantization": quantization, "model_sha256": model_sha256}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal(metadata: Mapping[str, Any], model_path: Path) -> dict[str, str]:
    """The `integrity` section of a converted folder's metadata."""
    model_sha = file_sha256(model_path)
    return {
        "model_sha256": model_sha,
        "quantization_sha256": record_sha256(metadata[QUANTIZATION_KEY], model_sha),
    }


def verify(metadata: Mapping[str, Any], model_path: Path) -> None:
    """Check the seal of an int8 folder that carries a recipe (fp32 and older folders carry none).

    Raises:
        ModelError: The recipe has no seal, the graph is not the one converted, or the record was edited.
    """
    quantization = metadata.get(QUANTIZATION_KEY)
    if not isinstance(quantization, Mapping) or "recipe" not in quantization:
        return
    metadata_path = model_path.parent / MODEL_METADATA_FILE
    fix = "convert the model again with ner-convert (the record and the graph must come from one conversion)"
    seal_section = metadata.get(INTEGRITY_KEY)
    if not isinstance(seal_section, Mapping):
        raise ModelError(
            "ner_model.json records a quantization recipe but no integrity seal",
            path=metadata_path,
            field=INTEGRITY_KEY,
            fix=fix,
        )
    model_sha = file_sha256(model_path)
    if model_sha != seal_section.get("model_sha256"):
        raise ModelError(
            f"{model_path.name} is not the graph this folder was converted and validated with "
            f"(sha256 {model_sha[:12]}..., recorded {str(seal_section.get('model_sha256'))[:12]}...)",
            path=model_path,
            field=f"{INTEGRITY_KEY}.model_sha256",
            fix=fix,
        )
    if record_sha256(quantization, model_sha) != seal_section.get("quantization_sha256"):
        raise ModelError(
            f"the quantization record (recipe {quantization.get('recipe')!r}) was edited after conversion: "
            "it no longer matches its seal",
            path=metadata_path,
            field=QUANTIZATION_KEY,
            fix=fix,
        )
