"""Turn the corpus a benchmark is pointed at into a canonical dataset folder.

A benchmark accepts either a canonical dataset folder (`train.jsonl`, `validation.jsonl`, ...) or
a folder of CoNLL files such as `../shared/data/wnut17/` (`wnut17train.conll`,
`emerging.dev.conll`, `emerging.test.annotated`). CoNLL files are read through the project's
`ner_lightning.data.conll` reader and written as JSON Lines into a scratch folder, never into the
corpus folder (the shared corpora stay unchanged and are never copied into the repository).
"""

from __future__ import annotations

import json
from pathlib import Path

from ner_lightning.contract import (
    SPLIT_FILES,
    TAGS_FIELD,
    TEST_SPLIT,
    TOKENS_FIELD,
    TRAIN_SPLIT,
    VALIDATION_SPLIT,
)
from ner_lightning.data.textfile import atomic_write_text
from ner_lightning.errors import DataError

#: Split -> words that identify its file in a CoNLL corpus folder (checked in order).
_SPLIT_HINTS = {
    TRAIN_SPLIT: ("train",),
    VALIDATION_SPLIT: ("dev", "valid"),
    TEST_SPLIT: ("test",),
}


def find_conll_splits(folder: Path) -> dict[str, Path]:
    """Map splits to the CoNLL files of a corpus folder by their names (`*train*`, `*dev*`, `*test*`).

    Raises:
        DataError: No file, or more than one, looks like the train or the dev split.
    """
    files = sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))
    found: dict[str, Path] = {}
    for split, hints in _SPLIT_HINTS.items():
        matches = [path for path in files if any(hint in path.name.lower() for hint in hints)]
        if len(matches) > 1:
            raise DataError(
                f"several files look like the {split} split: {[m.name for m in matches]}",
                path=folder,
                fix="convert the corpus with `ner-data convert` and pass the dataset folder",
            )
        if matches:
            found[split] = matches[0]
    for split in (TRAIN_SPLIT, VALIDATION_SPLIT):
        if split not in found:
            raise DataError(
                f"no file looks like the {split} split (names containing {list(_SPLIT_HINTS[split])})",
                path=folder,
                fix="pass a dataset folder with train.jsonl and validation.jsonl, or name the CoNLL files so",
            )
    return found


def prepare_dataset(source: str | Path, scratch: str | Path) -> Path:
    """Return a canonical dataset folder for `source`, converting CoNLL files into `scratch` if needed.

    Args:
        source: A dataset folder (holds `train.jsonl`) or a folder of CoNLL files.
        scratch: Folder that receives the converted dataset (created if missing).

    Returns:
        `source` itself when it is already canonical, else the converted folder inside `scratch`.

    Raises:
        DataError: `source` does not exist or its splits cannot be identified or read.
    """
    from ner_lightning.data.conll import read_conll

    source = Path(source)
    if not source.is_dir():
        raise DataError("corpus folder does not exist", path=source, fix="pass an existing folder")
    if (source / SPLIT_FILES[TRAIN_SPLIT]).is_file():
        return source
    target = Path(scratch) / source.name
    target.mkdir(parents=True, exist_ok=True)
    for split, path in find_conll_splits(source).items():
        lines = [
            json.dumps({TOKENS_FIELD: list(s.tokens), TAGS_FIELD: list(s.tags)}, ensure_ascii=False)
            for s in read_conll(path)
        ]
        atomic_write_text(target / SPLIT_FILES[split], "\n".join(lines) + "\n")
    return target
