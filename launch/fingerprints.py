"""Spec and execution fingerprints of a final-training run.

`spec_fp` names *what* is trained (backbone, hyperparameters, dataset version and content,
seed, CRF on/off, label set, the checkpoint it starts from); `exec_fp` names *how* it runs
(code version and dependency versions, precision, determinism). Both are sha256 digests of a
canonical JSON rendering, so equal inputs give equal fingerprints in any process on any
machine: keys are sorted, integral floats become ints, other floats use Python's shortest
round-trip spelling (`1e-5` and `0.00001` are the same number and render the same), tuples
become lists. MLflow names and tags never enter a fingerprint.

This module is torch-free: dependency versions come from `importlib.metadata`, never from
importing the packages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from launch.errors import LaunchError
from ner_lightning.contract import ENV_GIT_COMMIT, MANIFEST_FILE, MODEL_RUN_RECORD_FILES

#: Length (hex characters) of the fingerprints used in folder names and tags.
FINGERPRINT_LENGTH = 16
#: Distributions whose versions define the training code's behaviour (exec_fp).
TRAINING_DISTRIBUTIONS = (
    "torch",
    "lightning",
    "transformers",
    "tokenizers",
    "torchmetrics",
    "pytorch-crf",
    "seqeval",
    "ner-lightning",
)

LOGGER = logging.getLogger(__name__)


def _canonical(value: Any, where: str) -> Any:
    """Turn `value` into JSON-ready data with one spelling per meaning."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LaunchError(
                f"cannot fingerprint the non-finite number {value!r}",
                field=where or None,
                fix="use a finite number",
            )
        return int(value) if value.is_integer() else value
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, Mapping):
        return {
            str(key): _canonical(item, f"{where}.{key}" if where else str(key)) for key, item in value.items()
        }
    if isinstance(value, Sequence):
        return [_canonical(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise LaunchError(
        f"cannot fingerprint a value of type {type(value).__name__}",
        field=where or None,
        fix="use strings, numbers, booleans, lists and mappings only",
    )


def canonical_json(value: Any) -> str:
    """Canonical JSON text of `value`: sorted keys, normalized numbers, no whitespace.

    Args:
        value: Nested mappings, sequences, strings, numbers, booleans and None.

    Returns:
        The same text for equal values regardless of key order or number spelling.
    """
    return json.dumps(_canonical(value, ""), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(value: Any) -> str:
    """Short sha256 digest of `canonical_json(value)`."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:FINGERPRINT_LENGTH]


def spec_fingerprint(
    *,
    backbone: str,
    hyperparameters: Mapping[str, Any],
    dataset: Mapping[str, Any],
    seed: int,
    use_crf: bool,
    labels: Sequence[str],
    init_from: Mapping[str, Any] | None = None,
) -> str:
    """Fingerprint of what defines the trained model.

    Args:
        backbone: Backbone reference as written in configs (`pkg:...`, a name, or a
            project-relative path), never a machine-specific absolute path.
        hyperparameters: Merged training hyperparameters (learning rate, epochs, ...).
        dataset: `{"name", "version", "fingerprint"}` of the dataset version.
        seed: Random seed.
        use_crf: Whether the CRF head is on.
        labels: Ordered label set.
        init_from: Identity of the checkpoint the weights start from, or None.

    Returns:
        The spec fingerprint.
    """
    return fingerprint(
        {
            "backbone": backbone,
            "hyperparameters": dict(hyperparameters),
            "dataset": {key: dataset.get(key) for key in ("name", "version", "fingerprint")},
            "seed": seed,
            "use_crf": use_crf,
            "labels": list(labels),
            "init_from": dict(init_from) if init_from else None,
        }
    )


def exec_fingerprint(
    *,
    code_fp: str,
    precision: str,
    deterministic: bool,
    include_code_fp: bool = True,
    include_precision_fp: bool = True,
    include_determinism_fp: bool = False,
) -> str:
    """Fingerprint of how the model is trained; each component switchable (the `identity` section).

    Args:
        code_fp: Code fingerprint (see `code_fingerprint`).
        precision: Lightning precision setting (`32-true`, `bf16-mixed`, ...).
        deterministic: Whether deterministic algorithms are forced.
        include_code_fp: Include the code fingerprint.
        include_precision_fp: Include the precision.
        include_determinism_fp: Include the determinism setting.

    Returns:
        The exec fingerprint.
    """
    parts: dict[str, Any] = {}
    if include_code_fp:
        parts["code"] = code_fp
    if include_precision_fp:
        parts["precision"] = str(precision)
    if include_determinism_fp:
        parts["deterministic"] = bool(deterministic)
    return fingerprint(parts)


def dataset_fingerprint(folder: str | Path) -> str:
    """Content fingerprint of a dataset folder, computed from its files as `ner-data` does.

    One definition for the pipeline's `dataset_fingerprint` tags and the final-training loader,
    so one dataset has one fingerprint everywhere. The files are always hashed: a `manifest.json`
    is never trusted on its own, since a split edited after conversion would otherwise keep the
    old fingerprint and two contents would share one name. A stale manifest is reported.

    Args:
        folder: Dataset folder (holds `manifest.json` when written by `ner-data`).

    Returns:
        The sha256 fingerprint of the split files and `labels.json`.
    """
    from ner_lightning.data.manifest import dataset_fingerprint as content_fingerprint

    folder = Path(folder)
    computed = content_fingerprint(folder)
    manifest = folder / MANIFEST_FILE
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if isinstance(recorded, str) and recorded and recorded != computed:
            LOGGER.warning(
                "%s is stale: it records fingerprint %s but the files give %s (a split changed after "
                "conversion); using the files' fingerprint. Run `ner-data validate %s` for details.",
                manifest,
                recorded[:12],
                computed[:12],
                folder,
            )
    return computed


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks (checkpoints can be large).

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_fingerprint(path: str | Path, exclude: Sequence[str] = ()) -> str:
    """sha256 over the relative paths and bytes of every file under `path` (or of the file itself).

    Names the content of a folder registered as an asset (e.g. a backbone), independent of where it lies.

    Args:
        path: The folder (or file).
        exclude: Relative paths (POSIX) of files left out.
    """
    root = Path(path)
    files = (
        [root]
        if root.is_file()
        else sorted(
            p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in exclude
        )
    )
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode("utf-8") + b"\0" if file != root else b"\0")
        with file.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def model_content_sha256(folder: str | Path) -> str:
    """The registered model's `content_sha256`: the folder's fingerprint without its run records
    (`MODEL_RUN_RECORD_FILES`: the smoke report's job paths and timings), so converting the same
    weights again, or resuming an interrupted pipeline, names the same content."""
    return folder_fingerprint(folder, exclude=MODEL_RUN_RECORD_FILES)


def registered_model_fingerprint(folder: str | Path, recorded: str | None = None) -> str:
    """What to compare with a registered version's `content_sha256` tag (`recorded`).

    `model_content_sha256`, except for versions registered before the run records were left out of
    the hash: their tag is the whole folder's fingerprint, returned when it still matches, so an
    intact older version is neither re-registered nor reported changed.
    """
    content = model_content_sha256(folder)
    if recorded and recorded != content and folder_fingerprint(folder) == recorded:
        return recorded
    return content


def git_commit(root_dir: Path) -> str:
    """Commit of the code: `NER_GIT_COMMIT` when set (snapshots have no .git), else `git rev-parse HEAD`.

    Args:
        root_dir: Project root (a git work tree, or a snapshot of one).

    Returns:
        The commit hash, or "unknown" outside a repository.
    """
    from_env = os.environ.get(ENV_GIT_COMMIT)
    if from_env:
        return from_env
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root_dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def dependency_versions(distributions: Sequence[str] = TRAINING_DISTRIBUTIONS) -> dict[str, str]:
    """Installed versions of `distributions` from package metadata (nothing is imported).

    Args:
        distributions: Distribution names.

    Returns:
        Name -> version, "absent" for a distribution that is not installed.
    """
    versions = {}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def code_fingerprint(root_dir: Path, commit: str | None = None) -> str:
    """Fingerprint of the code that trains: git commit plus training dependency versions.

    Args:
        root_dir: Project root used to find the commit when `commit` is None.
        commit: Commit to use instead of asking git (tests, code snapshots).

    Returns:
        The code fingerprint.
    """
    return fingerprint({"git_commit": commit or git_commit(root_dir), "dependencies": dependency_versions()})
