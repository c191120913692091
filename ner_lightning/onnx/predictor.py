"""`OnnxTagger`: tag raw or pre-tokenized text with an exported model folder, without torch.

Serving needs only onnxruntime, the `tokenizers` library and numpy (this module must never import
torch or transformers; a test checks `sys.modules`). Inputs are cut into the same word-aligned
windows as in training (`ner_lightning.data.windows`), the emissions of each window's words are
decoded by the decoder `ner_model.json` names (`ner_lightning.decoding`: the same code as in
training-time evaluation, e.g. the numpy Viterbi with the IOB2-constrained CRF scores, or argmax),
and every word takes its tag from the window that owns it.

Batching: the windows of a whole request are sorted by length and cut into batches whose padded
size (rows x longest row) stays under a token budget, so padding stays small and a batch's
activations stay in cache; results are put back in input order. The default budget is the fastest
measured on the MiniLM model (`docs/benchmarks.md`): per sentence, a batch is never slower than
one sentence at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ner_lightning.contract import LABELS_FILE, MODEL_METADATA_FILE, ONNX_MODEL_FILE
from ner_lightning.data.windows import NO_WORD, Window, make_windows, merge_owned
from ner_lightning.decoding import decode_words, decoder_from_metadata
from ner_lightning.errors import ModelError
from ner_lightning.onnx.integrity import verify as verify_quantization_record
from ner_lightning.tags import extract_entities, split_tag
from ner_lightning.threads import resolve_threads

#: Tokenizer file the predictor loads (written by `save_pretrained` of every fast tokenizer).
TOKENIZER_FILE = "tokenizer.json"
#: Default padded tokens (rows x longest row) per onnxruntime call; see `OnnxTagger`.
DEFAULT_TOKEN_BUDGET = 256
#: Default most windows per onnxruntime call.
DEFAULT_BATCH_SIZE = 64

# Words as the CoNLL-style and tweet corpora cut them: URLs whole, punctuation on its own, inner
# apostrophes/hyphens/dots kept (`O'Neil`, `e-mail`, `U.S`), a leading @ or # kept (`@user`, `#topic`).
_WORD = re.compile(r"https?://\S*[^\s.,;:!?)\]'\"]|[@#]?\w+(?:[-'’./:@&]\w+)*|\S", re.UNICODE)


@dataclass(frozen=True)
class Word:
    """One word of an input with its tag and character span `[start, end)` (None without raw text)."""

    text: str
    tag: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class EntitySpan:
    """An entity: its type, words `[start_word, end_word)` and characters `[start, end)` of the text."""

    type: str
    text: str
    start_word: int
    end_word: int
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Tagged:
    """The tags and entities of one input."""

    words: list[Word] = field(default_factory=list)
    entities: list[EntitySpan] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (what `ner-predict` writes)."""
        return {
            "tokens": [asdict(word) for word in self.words],
            "entities": [asdict(entity) for entity in self.entities],
        }


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Words of raw text as `(word, start, end)` character spans (empty for blank text)."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def read_model_folder(model_dir: str | Path) -> tuple[dict[str, Any], list[str]]:
    """Read and cross-check `ner_model.json` and `labels.json` of a model folder.

    Raises:
        ModelError: A file is missing or malformed, or the two disagree on the labels.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ModelError(
            f"model folder {folder} does not exist", path=folder, fix="pass the folder ner-convert wrote"
        )
    files = {}
    for name in (MODEL_METADATA_FILE, LABELS_FILE):
        path = folder / name
        if not path.is_file():
            raise ModelError(
                f"{name} is missing from the model folder", path=path, fix="re-export or re-convert the model"
            )
        try:
            files[name] = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelError(
                f"{name} is not valid JSON: {error}", path=path, fix="re-export the model"
            ) from error
    metadata, labels = files[MODEL_METADATA_FILE], files[LABELS_FILE]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelError(
            "labels.json must be a non-empty JSON list of tag strings",
            path=folder / LABELS_FILE,
            fix="re-export the model",
        )
    for label in labels:
        try:
            split_tag(label)
        except ValueError as error:
            raise ModelError(str(error), path=folder / LABELS_FILE, fix="re-export the model") from error
    if not isinstance(metadata, dict):
        raise ModelError("ner_model.json must hold a JSON object", path=folder / MODEL_METADATA_FILE)
    if metadata.get("labels") is not None and metadata["labels"] != labels:
        raise ModelError(
            "labels.json disagrees with the labels recorded in ner_model.json",
            path=folder / LABELS_FILE,
            field="labels",
            fix="restore labels.json from the export; the label order must match the model's outputs",
        )
    return metadata, labels


def batch_dependent(metadata: Mapping[str, Any]) -> bool:
    """Whether a model folder's outputs for one window depend on the other windows of its batch:
    dynamic int8 quantization takes one activation scale per tensor and call."""
    quantization = metadata.get("quantization")
    return (
        metadata.get("precision") == "int8"
        and isinstance(quantization, Mapping)
        and quantization.get("method", "dynamic") == "dynamic"
    )


class OnnxTagger:
    """Tags text with an ONNX model folder (`model.onnx`, tokenizer files, `labels.json`, `ner_model.json`).

    Args:
        model_dir: The model folder written by the export callback or `ner-convert`.
        batch_size: Most windows per onnxruntime call. None: 1 for a dynamic int8 model, whose
            activation scales are taken per call over the whole batch, so that a text's tags never
            depend on the texts tagged with it (batching them cost the WNUT16 model 1.2 F1 points in
            calls of 32 texts and gained 11 % speed at 1 thread, 28 % at 2; docs/benchmarks.md);
            `DEFAULT_BATCH_SIZE` for fp32 and static int8 models, whose results do not depend on it.
        model_file: File name of the graph inside the folder.
        threads: onnxruntime intra-op threads; None or 0: every core this process may use
            (`ner_lightning.threads.available_cores`). More than that warns and uses what is available.
        token_budget: Most padded tokens (rows x longest row) per onnxruntime call; a window longer
            than the budget runs alone. Smaller batches keep activations in cache, larger ones
            amortise per-call overhead (see `DEFAULT_TOKEN_BUDGET`).

    Raises:
        ModelError: The folder is incomplete or does not fit, or an option is out of range.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        batch_size: int | None = None,
        model_file: str = ONNX_MODEL_FILE,
        threads: int | None = None,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        if batch_size is not None and batch_size < 1:
            raise ModelError(
                f"batch_size must be >= 1, got {batch_size}", field="batch_size", fix="use e.g. 32"
            )
        if token_budget < 1:
            raise ModelError(
                f"token_budget must be >= 1, got {token_budget}",
                field="token_budget",
                fix=f"use e.g. {DEFAULT_TOKEN_BUDGET}",
            )
        self.token_budget = token_budget
        self.threads, _ = resolve_threads(threads)
        self.metadata, self.labels = read_model_folder(self.model_dir)
        self.batch_size = batch_size or (1 if batch_dependent(self.metadata) else DEFAULT_BATCH_SIZE)
        self.max_length = int(self.metadata["max_length"])
        self.stride = int(self.metadata["stride"])
        model_path = self.model_dir / model_file
        if not model_path.is_file():
            raise ModelError(
                f"{model_file} is missing", path=model_path, fix="re-export or re-convert the model"
            )
        # A converted folder's recipe record is sealed to its graph; a tampered record is refused.
        verify_quantization_record(self.metadata, model_path)
        tokenizer_path = self.model_dir / TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise ModelError(
                f"{TOKENIZER_FILE} is missing", path=tokenizer_path, fix="re-export with a fast tokenizer"
            )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        # The export records the training tokenizer's layout; older folders are asked the tokenizer.
        if "prefix_ids" in self.metadata and "suffix_ids" in self.metadata:
            self.prefix_ids = [int(i) for i in self.metadata["prefix_ids"]]
            self.suffix_ids = [int(i) for i in self.metadata["suffix_ids"]]
        else:
            self.prefix_ids, self.suffix_ids = self._special_ids()
        unk = self.metadata.get("unk_token_id")
        self.unk_id = int(unk) if unk is not None else self._unk_id()
        self.pad_id = int(self.metadata.get("pad_token_id") or 0)
        try:
            self.session = onnxruntime.InferenceSession(
                str(model_path), session_options(self.threads), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(
                f"onnxruntime cannot load the model: {error}", path=model_path, fix="re-export the model"
            ) from error
        self.input_names = [i.name for i in self.session.get_inputs()]
        width = self.session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(self.labels):
            raise ModelError(
                f"the model outputs {width} scores per token but labels.json lists {len(self.labels)} labels",
                path=self.model_dir / LABELS_FILE,
                fix="use the labels.json exported with this model",
            )
        self.decoder = decoder_from_metadata(self.metadata, len(self.labels))

    # --- public API -----------------------------------------------------------------------------
    def predict(self, texts: Sequence[str]) -> list[Tagged]:
        """Tag raw texts: words with character offsets, their tags and the entity spans.

        Blank texts give an empty result (no words, no entities).
        """
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        spans = [split_words(text) for text in texts]
        tags = self.tag_words([[w for w, _, _ in s] for s in spans])
        results = []
        for text, words, word_tags in zip(texts, spans, tags, strict=True):
            tagged_words = [Word(w, t, s, e) for (w, s, e), t in zip(words, word_tags, strict=True)]
            entities = [
                EntitySpan(
                    entity.type,
                    text[words[entity.start][1] : words[entity.end - 1][2]],
                    entity.start,
                    entity.end,
                    words[entity.start][1],
                    words[entity.end - 1][2],
                )
                for entity in extract_entities(word_tags)
            ]
            results.append(Tagged(tagged_words, entities))
        return results

    def predict_tokens(self, sentences: Sequence[Sequence[str]]) -> list[Tagged]:
        """Tag pre-tokenized sentences; entities carry word offsets (no character offsets)."""
        tags = self.tag_words(sentences)
        return [
            Tagged(
                [Word(w, t) for w, t in zip(words, word_tags, strict=True)],
                [
                    EntitySpan(e.type, " ".join(words[e.start : e.end]), e.start, e.end)
                    for e in extract_entities(word_tags)
                ],
            )
            for words, word_tags in zip(sentences, tags, strict=True)
        ]

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """One tag per word of each sentence (long sentences are windowed like in training)."""
        label_ids = self.tag_ids(sentences)
        return [[self.labels[i] for i in ids] for ids in label_ids]

    def tag_ids(self, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
        """Label ids per word of each sentence."""
        windows = [self.windows(words) for words in sentences]
        flat = [window for sentence_windows in windows for window in sentence_windows]
        decoded = self.decode_windows(flat)
        results, cursor = [], 0
        for sentence_windows in windows:
            count = len(sentence_windows)
            results.append(merge_owned(sentence_windows, decoded[cursor : cursor + count]) if count else [])
            cursor += count
        return results

    # --- pipeline steps (public so the smoke test and the benchmark reuse them) ------------------
    def windows(self, words: Sequence[str]) -> list[Window]:
        """Word-aligned windows of one sentence (none for an empty one)."""
        if not words:
            return []
        return make_windows(
            self.encode_words(words), self.prefix_ids, self.suffix_ids, self.max_length, self.stride
        )

    def encode_words(self, words: Sequence[str]) -> list[list[int]]:
        """Subword ids of each word (without special tokens); a word the tokenizer drops gets the unknown id."""
        encoding = self.tokenizer.encode(list(words), is_pretokenized=True, add_special_tokens=False)
        per_word: list[list[int]] = [[] for _ in words]
        for token_id, word in zip(encoding.ids, encoding.word_ids, strict=True):
            if word is not None:
                per_word[word].append(token_id)
        return [ids or [self.unk_id] for ids in per_word]

    def batch_inputs(self, windows: Sequence[Window]) -> dict[str, np.ndarray]:
        """Padded onnxruntime inputs of a batch of windows."""
        length = max(len(w.input_ids) for w in windows)
        input_ids = np.full((len(windows), length), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(windows), length), dtype=np.int64)
        for row, window in enumerate(windows):
            input_ids[row, : len(window.input_ids)] = window.input_ids
            attention_mask[row, : len(window.input_ids)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        return feeds

    def emissions(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run the graph: `[B, T, num_labels]` emission scores."""
        return self.session.run(None, {name: feeds[name] for name in self.input_names})[0]

    def decode_windows(self, windows: Sequence[Window]) -> list[list[int]]:
        """Per window, one label id per position (at first subwords; -1 elsewhere), in input order."""
        decoded: list[list[int]] = [[] for _ in windows]
        lengths = [len(w.input_ids) for w in windows]
        for chunk in length_batches(lengths, self.token_budget, self.batch_size):
            batch = [windows[i] for i in chunk]
            scores = self.emissions(self.batch_inputs(batch))
            for row, ids in zip(chunk, self.decode_emissions(batch, scores), strict=True):
                decoded[row] = ids
        return decoded

    def decode_emissions(self, windows: Sequence[Window], scores: np.ndarray) -> list[list[int]]:
        """Decode a batch's emissions over each window's first subwords (left-aligned, as in training)."""
        word_mask = np.zeros(scores.shape[:2], dtype=bool)
        for row, window in enumerate(windows):
            word_mask[row, : len(window.word_index)] = [w != NO_WORD for w in window.word_index]
        ids = decode_words(scores, word_mask, self.decoder)
        return [ids[row, : len(window.input_ids)].tolist() for row, window in enumerate(windows)]

    # --- helpers --------------------------------------------------------------------------------
    def _special_ids(self) -> tuple[list[int], list[int]]:
        """Special ids the tokenizer puts before and after a single sequence."""
        plain = self.tokenizer.encode(["a"], is_pretokenized=True, add_special_tokens=False)
        full = self.tokenizer.encode(["a"], is_pretokenized=True, add_special_tokens=True)
        mask = full.special_tokens_mask
        first = mask.index(0) if 0 in mask else len(mask)
        prefix = full.ids[:first]
        suffix = full.ids[first + len(plain.ids) :]
        return prefix, suffix

    def _unk_id(self) -> int:
        for token in (self.metadata.get("unk_token"), "[UNK]", "<unk>", "[unk]"):
            if token and self.tokenizer.token_to_id(token) is not None:
                return int(self.tokenizer.token_to_id(token))
        return 0


def length_batches(lengths: Sequence[int], token_budget: int, max_rows: int) -> list[list[int]]:
    """Group item indices into batches of similar length under a padded-token budget.

    Items are sorted by length (stable, so equal lengths keep their order); a batch grows while
    `rows x longest length <= token_budget` and `rows <= max_rows`. An item longer than the budget
    forms a batch alone.

    Args:
        lengths: Length of each item (ids per window).
        token_budget: Most padded tokens per batch.
        max_rows: Most items per batch.

    Returns:
        Index lists, shortest items first; together they hold every index once.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted ascending, so the newcomer is the batch's longest row.
        if current and ((len(current) + 1) * lengths[index] > token_budget or len(current) == max_rows):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def session_options(threads: int) -> Any:
    """onnxruntime session options for serving on `threads` cores (an `onnxruntime.SessionOptions`).

    One call runs at a time, so the graph runs sequentially with one inter-op thread and all the
    parallelism inside operators. The graph is optimised fully (fusions + layout) at load time.
    The memory-pattern planner is off: its plan is keyed on exact input shapes, which change with
    every batch here; the memory arena stays on so buffers are reused across calls.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    options.enable_cpu_mem_arena = True
    return options
