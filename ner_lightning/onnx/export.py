"""Export a `TokenClassifier` to an ONNX model folder that alone reproduces its predictions.

The graph covers the backbone and the head's scores (`TokenClassifier.emissions`) with dynamic
batch and sequence axes. Decoding is not in the graph: `ner_model.json` names the head's decoder
and its arguments (`decoder`: e.g. `crf_viterbi` with the CRF scores and IOB2 masks), which the
torch-free predictor rebuilds from `ner_lightning.decoding`. An export whose graph the predictor
could not decode (scores of the wrong shape, an unregistered decoder, a decode that differs from
the model's) is refused here, not at serving time.

The folder (`model.onnx`, tokenizer files, `labels.json`, `ner_model.json`) is written into a
temporary sibling folder and renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ner_lightning.contract import (
    ENV_CONFIG_HASHES,
    ENV_DATASET_FINGERPRINT,
    ENV_GIT_COMMIT,
    LABELS_FILE,
    MANIFEST_FILE,
    MODEL_METADATA_FILE,
    ONNX_MODEL_FILE,
)
from ner_lightning.errors import ExportError, ModelError

#: Version of the `ner_model.json` layout; readers refuse versions they do not know.
#: 2 adds `head` and `decoder` (format 1 folders carry `use_crf`/`crf` only; both are still read).
METADATA_FORMAT_VERSION = 2
#: Name of the graph output.
OUTPUT_NAME = "emissions"
#: Largest |PyTorch - ONNX| emission difference an export accepts as the same function.
EXPORT_ATOL = 1e-3


class EmissionsGraph(nn.Module):
    """The exported function: `emissions(input_ids, attention_mask[, token_type_ids])`.

    Args:
        model: A `TokenClassifier` (anything with an `emissions` method of that signature).
        token_type_ids: Whether the graph takes `token_type_ids`.
    """

    def __init__(self, model: nn.Module, token_type_ids: bool) -> None:
        super().__init__()
        self.model = model
        self.token_type_ids = token_type_ids

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`[B, T, num_labels]` emissions."""
        return self.model.emissions(
            input_ids, attention_mask, token_type_ids if self.token_type_ids else None
        )


def uses_token_type_ids(model: nn.Module, tokenizer: Any) -> bool:
    """Whether the backbone reads `token_type_ids` (BERT, DeBERTa-v2 with segment embeddings; not DistilBERT)."""
    if "token_type_ids" not in getattr(tokenizer, "model_input_names", []):
        return False
    config = getattr(getattr(model, "backbone", None), "config", None)
    return config is None or getattr(config, "type_vocab_size", 0) > 0


def head_metadata(model: nn.Module, num_labels: int) -> dict[str, Any]:
    """The head's entries of `ner_model.json`: `head` (its spec), `decoder` (name and arguments) and,
    for readers of format 1, `use_crf` and `crf`.

    Raises:
        ExportError: The head names a decoder the predictor does not have, or its arguments do not fit.
    """
    from ner_lightning.decoding import build_decoder

    head = model.head
    decoder = {"name": head.decoder_name, "args": head.decoder_args()}
    try:
        build_decoder(decoder["name"], decoder["args"], num_labels)
    except ModelError as error:
        raise ExportError(
            f"the predictor cannot decode head {type(head).__qualname__}: {error.message}",
            field="model.head",
            fix=error.fix,
        ) from error
    use_crf = decoder["name"] == "crf_viterbi"
    return {
        "head": head.spec(),
        "decoder": decoder,
        "use_crf": use_crf,
        "crf": decoder["args"] if use_crf else None,
    }


def check_decoding(model: nn.Module, scores: np.ndarray, graph_output: np.ndarray, metadata: dict) -> None:
    """Refuse an export the predictor could not decode as the model does.

    The graph's output must be `[batch, sequence, num_labels]`, and the decoder rebuilt from the
    JSON metadata (as `OnnxTagger` rebuilds it) must decode the model's scores exactly as the model does.

    Raises:
        ExportError: Either does not hold.
    """
    from ner_lightning.decoding import decode_words, decoder_from_metadata

    name = type(model.head).__qualname__
    if graph_output.ndim != 3 or graph_output.shape[-1] != len(model.label_names):
        raise ExportError(
            f"head {name}'s graph outputs shape {graph_output.shape}; the predictor decodes "
            f"[batch, sequence, {len(model.label_names)}] scores",
            field="model.head",
            fix="return one score per label and subword from the head's forward",
        )
    decoder = decoder_from_metadata(json.loads(json.dumps(metadata)), len(model.label_names))
    word_mask = np.ones(scores.shape[:2], dtype=bool)
    ours = decode_words(scores, word_mask, decoder)
    theirs = model.decode_words(torch.from_numpy(scores), torch.from_numpy(word_mask)).numpy()
    if not np.array_equal(ours, theirs):
        raise ExportError(
            f"head {name}: the decoder rebuilt from ner_model.json decodes differently from the model",
            field="model.head",
            fix="make decoder_args() return every value the decoder needs, JSON-ready",
        )


def provenance(data_dir: str | Path | None = None) -> dict[str, Any]:
    """Config hashes, dataset fingerprint and git commit of the run that produced a model.

    Read from the variables the launcher sets (`NER_CONFIG_SHA256`, `NER_DATASET_FINGERPRINT`,
    `NER_GIT_COMMIT`); falls back to the dataset manifest and to `git rev-parse HEAD`.
    """
    hashes: dict[str, str] = {}
    raw = os.environ.get(ENV_CONFIG_HASHES)
    if raw:
        try:
            hashes = dict(json.loads(raw))
        except (json.JSONDecodeError, TypeError, ValueError):
            hashes = {"unparsed": raw}
    fingerprint = os.environ.get(ENV_DATASET_FINGERPRINT)
    if not fingerprint and data_dir:
        manifest = Path(data_dir) / MANIFEST_FILE
        if manifest.is_file():
            try:
                fingerprint = json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                fingerprint = None
    commit = os.environ.get(ENV_GIT_COMMIT)
    if not commit:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"config_hashes": hashes, "dataset_fingerprint": fingerprint, "git_commit": commit}


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[str | None]:
    """Trace the backbone with its plain ("eager") attention; the implementation it had comes back after.

    transformers' SDPA attention traces to `IsNaN`/`Where` masking that onnxruntime's transformer
    optimiser does not recognise, so the attention stays loose fp32 ops; the eager attention traces
    to the pattern onnxruntime fuses into `Attention` (and `QAttention` in int8), which made the int8
    graph of MiniLM 1.2-1.4x faster (docs/benchmarks.md). The numbers are the same: the export checks
    the graph against PyTorch either way. Yields the implementation traced (None: left as it was,
    for backbones that cannot switch).
    """
    backbone = getattr(model, "backbone", None)
    config = getattr(backbone, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    switch = getattr(backbone, "set_attn_implementation", None)
    switched = False
    if previous not in (None, "eager") and callable(switch):
        try:
            switch("eager")
            switched = True
        except (ValueError, TypeError, AttributeError):  # a backbone without an eager path keeps its own
            switched = False
    try:
        yield "eager" if switched or previous == "eager" else None
    finally:
        if switched:
            switch(previous)


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `target`, on error it is deleted."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        if target.exists():
            retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def dummy_inputs(
    tokenizer: Any, token_type_ids: bool, length: int = 8, batch: int = 2
) -> dict[str, torch.Tensor]:
    """A small batch for tracing and for checking the exported graph (second row padded)."""
    vocab = max(int(getattr(tokenizer, "vocab_size", 0) or 0), 10)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1:, length // 2 :] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids:
        inputs["token_type_ids"] = torch.zeros_like(input_ids)
    return inputs


def export_onnx(
    model: nn.Module,
    tokenizer: Any,
    output_dir: str | Path,
    *,
    max_length: int,
    stride: int,
    label_all_tokens: bool = False,
    opset: int = 17,
    data_dir: str | Path | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write the model folder of a `TokenClassifier`.

    Args:
        model: The trained `TokenClassifier` (moved to CPU and eval mode for the export).
        tokenizer: Its fast tokenizer (saved next to the graph).
        output_dir: The model folder to (re)create.
        max_length: Window length used in training (serving windows the same way).
        stride: Window overlap used in training.
        label_all_tokens: Whether training labelled continuation subwords (recorded only).
        opset: ONNX opset version.
        data_dir: Dataset folder, to read its fingerprint from `manifest.json` when the launcher did not pass one.
        extra_metadata: More keys for `ner_model.json`.

    Returns:
        The model folder.

    Raises:
        ExportError: The exporter failed or the exported graph does not reproduce PyTorch's emissions.
    """
    import onnxruntime

    from ner_lightning.data.datamodule import special_token_layout

    label_names = list(model_label_names(model))
    model = model.cpu().eval()
    token_types = uses_token_type_ids(model, tokenizer)
    graph = EmissionsGraph(model, token_types).eval()
    inputs = dummy_inputs(tokenizer, token_types)
    names = list(inputs)
    with atomic_folder(output_dir) as staging, eager_attention(model) as attention:
        onnx_path = staging / ONNX_MODEL_FILE
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about Python control flow in the backbone
                torch.onnx.export(
                    graph,
                    tuple(inputs.values()),
                    str(onnx_path),
                    input_names=names,
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={
                        **{n: {0: "batch", 1: "sequence"} for n in names},
                        OUTPUT_NAME: {0: "batch", 1: "sequence"},
                    },
                    opset_version=opset,
                    dynamo=False,
                )
        except Exception as error:  # the exporter raises many unrelated types
            raise ExportError(
                f"torch.onnx.export failed: {type(error).__name__}: {error}",
                field="onnx_export.opset",
                fix="check that the backbone traces (try another opset, e.g. 14 or 17)",
            ) from error
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        graph_inputs = [i.name for i in session.get_inputs()]
        with torch.no_grad():
            expected = graph(**inputs).numpy()
        got = session.run(None, {k: v.numpy() for k, v in inputs.items() if k in graph_inputs})[0]
        if got.shape != expected.shape:
            raise ExportError(
                f"the exported graph outputs shape {got.shape}, PyTorch {expected.shape}",
                field="model.head",
                fix="the head's forward must trace to the same shape (avoid Python control flow on sizes)",
            )
        difference = float(np.abs(expected - got).max())
        if not difference <= EXPORT_ATOL:
            raise ExportError(
                f"the exported graph differs from PyTorch by {difference:.2e} (> {EXPORT_ATOL})",
                fix="report this backbone; try another opset",
            )
        heads = head_metadata(model, len(label_names))
        check_decoding(model, expected, got, heads)
        tokenizer.save_pretrained(str(staging))
        (staging / LABELS_FILE).write_text(json.dumps(label_names, indent=2) + "\n", encoding="utf-8")
        prefix_ids, suffix_ids = special_token_layout(tokenizer)
        metadata = {
            "format_version": METADATA_FORMAT_VERSION,
            "backbone": backbone_reference(model_backbone_name(model)),
            "backbone_type": getattr(
                getattr(getattr(model, "backbone", None), "config", None), "model_type", None
            ),
            "attention_traced": attention,
            "max_length": int(max_length),
            "stride": int(stride),
            "label_all_tokens": bool(label_all_tokens),
            "label_scheme": "IOB2",
            "labels": label_names,
            **heads,
            "input_names": graph_inputs,
            "output_name": OUTPUT_NAME,
            "opset": opset,
            "precision": "fp32",
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            "unk_token": tokenizer.unk_token,
            "unk_token_id": tokenizer.unk_token_id,
            "prefix_ids": prefix_ids,
            "suffix_ids": suffix_ids,
            **provenance(data_dir),
            **dict(extra_metadata or {}),
        }
        (staging / MODEL_METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return Path(output_dir)


def model_label_names(model: nn.Module) -> list[str]:
    """The label list of a `TokenClassifier`."""
    for source in (
        getattr(model, "label_names", None),
        getattr(getattr(model, "hparams", {}), "get", dict().get)("label_names"),
    ):
        if source:
            return list(source)
    raise ModelError("the model has no label_names", fix="export a ner_lightning TokenClassifier")


def model_backbone_name(model: nn.Module) -> str | None:
    """The backbone reference the model was built from (hub name, folder or `pkg:` path)."""
    hparams = getattr(model, "hparams", {})
    return getattr(model, "backbone_name", None) or (
        hparams.get("backbone") if hasattr(hparams, "get") else None
    )


def backbone_reference(name: str | None) -> str | None:
    """The backbone as `ner_model.json` records it: a hub name or `pkg:` path as given, a local folder
    by its name only (in a job the folder is the job's input mount: its path names the job, and two
    runs of the same model would record different paths)."""
    if not name or name.startswith("pkg:"):
        return name
    path = Path(name)
    return path.name if path.is_absolute() or path.exists() else name


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a model's state dict, in name order.

    Names the weights a model folder was converted from; unlike the checkpoint file's hash it does not
    change with what else the checkpoint holds (the job paths in its hyperparameters, optimizer state).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
