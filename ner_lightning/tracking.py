"""MLflow logging that follows the job's environment, plus run provenance (git commit, config hashes).

Where the run lives is decided by the environment, never by the training code:
`MLFLOW_RUN_ID` (set by Azure ML inside a job and by the local backend) attaches to that run;
else `MLFLOW_TRACKING_URI` names the store; else the logger's `tracking_uri` (the training command
line sets `sqlite:///<output_dir>/mlruns.db`, so no store appears in the working folder unasked).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from ner_lightning.contract import (
    ENV_CONFIG_HASHES,
    ENV_GIT_COMMIT,
    ENV_MLFLOW_EXPERIMENT_NAME,
    ENV_MLFLOW_RUN_ID,
    ENV_MLFLOW_TRACKING_URI,
    TAG_CONFIG_SHA256_PREFIX,
    TAG_GIT_COMMIT,
)
from ner_lightning.errors import ConfigError

#: Experiment used when neither the config nor MLFLOW_EXPERIMENT_NAME names one.
DEFAULT_EXPERIMENT = "ner-lightning"
#: SQLite store file (in the working directory) used when no tracking URI is given.
DEFAULT_STORE_FILE = "mlruns.db"
#: Artifact folder of new experiments in the training command line's default store (beside it).
DEFAULT_ARTIFACT_DIR = "mlartifacts"
#: Packages whose versions are logged as params `version.<package>`.
VERSIONED_PACKAGES = ("torch", "lightning", "transformers", "ner-lightning")
UNKNOWN_COMMIT = "unknown"


def git_commit() -> str:
    """The code's git commit: `NER_GIT_COMMIT`, else `git rev-parse HEAD` beside this package, else "unknown"."""
    from_env = os.environ.get(ENV_GIT_COMMIT, "").strip()
    if from_env:
        return from_env
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_COMMIT
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else UNKNOWN_COMMIT


def config_hashes(paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """`{file name: sha256 of the file bytes}`, starting from the launcher's `NER_CONFIG_SHA256` JSON.

    Files given here win over the environment's entry of the same name (they are what this process read).

    Raises:
        ConfigError: `NER_CONFIG_SHA256` is not a JSON object of strings, or a file cannot be read.
    """
    hashes: dict[str, str] = {}
    raw = os.environ.get(ENV_CONFIG_HASHES, "").strip()
    if raw:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as error:
            parsed = error
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise ConfigError(
                f"{ENV_CONFIG_HASHES} is not a JSON object of file name -> sha256: {raw[:200]!r}",
                field=ENV_CONFIG_HASHES,
                fix='set it to e.g. {"base.yaml": "<sha256>"} or unset it',
            )
        hashes.update(parsed)
    for path in paths:
        path = Path(path)
        try:
            hashes[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as error:
            raise ConfigError(
                f"cannot read config file: {error}", path=path, fix="check the --config path"
            ) from error
    return hashes


def package_versions() -> dict[str, str]:
    """`{"version.<package>": version}` of the packages a result depends on."""
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[f"version.{package}"] = version(package)
        except PackageNotFoundError:
            versions[f"version.{package}"] = "not installed"
    return versions


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The tracking store to use: `explicit`, else `MLFLOW_TRACKING_URI`, else `sqlite:///<cwd>/mlruns.db`."""
    return (
        explicit or os.environ.get(ENV_MLFLOW_TRACKING_URI) or f"sqlite:///{Path.cwd() / DEFAULT_STORE_FILE}"
    )


def log_to_attached_run(
    metrics: dict[str, float], artifact: str | Path | None = None, params: dict[str, str] | None = None
) -> bool:
    """Log metrics (and one file, and params) to the run named by `MLFLOW_RUN_ID`, as jobs outside Lightning do.

    Args:
        metrics: Metric name -> value.
        artifact: A file to attach to the run, if any.
        params: Param name -> value (strings the launcher reads back, e.g. the int8 recipe).

    Returns:
        True when a run was attached and logged to; False outside a job (no `MLFLOW_RUN_ID`).
    """
    run_id = os.environ.get(ENV_MLFLOW_RUN_ID)
    if not run_id:
        return False
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=resolve_tracking_uri())
    for name, value in metrics.items():
        client.log_metric(run_id, name, float(value))
    for name, value in (params or {}).items():
        client.log_param(run_id, name, value)
    if artifact is not None:
        client.log_artifact(run_id, str(artifact))
    return True


def resolve_experiment_name(explicit: str | None = None) -> str:
    """The experiment of a new run: `explicit`, else `MLFLOW_EXPERIMENT_NAME`, else "ner-lightning"."""
    return explicit or os.environ.get(ENV_MLFLOW_EXPERIMENT_NAME) or DEFAULT_EXPERIMENT


class EnvMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger, attached to the run or store the environment names.

    Args:
        experiment_name: Experiment of a new run (default: `MLFLOW_EXPERIMENT_NAME`, else "ner-lightning").
            Ignored when attaching to `MLFLOW_RUN_ID`.
        run_name: Name of a new run (ignored when attaching to an existing run).
        tracking_uri: Tracking store (default: `MLFLOW_TRACKING_URI`, else `sqlite:///<cwd>/mlruns.db`;
            the training command line fills in `sqlite:///<output_dir>/mlruns.db`).
        tags: Extra tags of the run.
        artifact_location: Artifact root of a newly created experiment (default: MLflow's, `./mlruns`;
            the training command line fills in `<output_dir>/mlartifacts` with its default store).
    """

    def __init__(
        self,
        experiment_name: str | None = None,
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, str] | None = None,
        artifact_location: str | None = None,
    ) -> None:
        run_id = os.environ.get(ENV_MLFLOW_RUN_ID) or None
        # MLflow opens the store here (and creates a new SQLite file, which takes seconds).
        super().__init__(
            experiment_name=resolve_experiment_name(experiment_name),
            run_name=run_name,
            tracking_uri=resolve_tracking_uri(tracking_uri),
            tags=tags,
            run_id=run_id,
            artifact_location=artifact_location,
        )
        #: True when logging into a run someone else created (and therefore owns its lifecycle).
        self.attached = run_id is not None
        self._provenance_logged = False

    @rank_zero_only
    def log_provenance(self, config_files: Iterable[str | os.PathLike[str]]) -> None:
        """Log tags `git_commit` and `config_sha256.<file>`, and params `version.<package>` (once per run).

        Args:
            config_files: The `--config` files the command line read.
        """
        if self._provenance_logged:
            return
        tags = {TAG_GIT_COMMIT: git_commit()}
        tags.update(
            {f"{TAG_CONFIG_SHA256_PREFIX}{name}": sha for name, sha in config_hashes(config_files).items()}
        )
        for key, value in tags.items():
            self.experiment.set_tag(self.run_id, key, value)
        self.log_hyperparams(package_versions())
        self._provenance_logged = True

    @rank_zero_only
    def log_entity_table(self, scores: Any, artifact_file: str) -> None:
        """Log per-type precision/recall/F1/support (and the micro row) as an MLflow table.

        Args:
            scores: An `ner_lightning.metrics.EntityScores`.
            artifact_file: Artifact name of the table, e.g. `test_entity_scores.json`.
        """
        rows = [(name, s.precision, s.recall, s.f1, s.support) for name, s in sorted(scores.per_type.items())]
        support = sum(row[4] for row in rows)
        rows.append(("micro", scores.precision, scores.recall, scores.f1, support))
        columns = ("type", "precision", "recall", "f1", "support")
        table = {column: [row[i] for row in rows] for i, column in enumerate(columns)}
        self.experiment.log_table(self.run_id, data=table, artifact_file=artifact_file)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """End the run, unless it was attached to: then its creator (Azure ML, the local backend) ends it."""
        if self.attached:
            return
        super().finalize(status)
