"""The local model registry: MLflow's registry on the workspace's SQLite store.

A version is created from the model folder logged as artifacts of its conversion run. Versions
are never overwritten: registering the same lineage again returns the existing version, a new
lineage gets the next version, and a name owned by another pipeline is refused.
"""

from __future__ import annotations

from typing import Any

from launch.errors import LaunchError
from launch.jobs import ModelRegistration, RegisteredModel, frozen_mapping
from launch.lineage import TAG_CONVERSION_RUN_ID, TAG_FINAL_RUN_ID, TAG_PIPELINE, check_registration
from launch.local.workspace import LocalWorkspace
from ner_lightning.contract import TAG_DATASET_NAME

MODEL_ARTIFACT_DIR = "model"


def _run_tags(client: Any, run_id: str) -> dict[str, str] | None:
    try:
        return dict(client.get_run(run_id).data.tags)
    except Exception:
        return None


def register_model(workspace: LocalWorkspace, registration: ModelRegistration) -> RegisteredModel:
    """Register the model folder as a new version of `registration.name` (or reuse the same lineage).

    Raises:
        LaunchError: The lineage is not a final-training conversion, or the name belongs to
            another lineage (another pipeline or dataset).
    """
    client = workspace.mlflow_client()
    tags = dict(registration.tags)
    check_registration(registration, _run_tags(client, tags[TAG_FINAL_RUN_ID]))
    owner = {TAG_PIPELINE: tags[TAG_PIPELINE], TAG_DATASET_NAME: tags.get(TAG_DATASET_NAME, "")}
    existing = _registered_model(client, registration.name)
    if existing is None:
        client.create_registered_model(registration.name, tags=owner, description=registration.description)
    else:
        found = {key: existing.tags.get(key) for key in owner}
        if found != owner:
            raise LaunchError(
                f"a registered model named {registration.name!r} already exists with another lineage "
                f"({', '.join(f'{k}={v}' for k, v in found.items())}; this one has "
                f"{', '.join(f'{k}={v}' for k, v in owner.items())})",
                field="registration.model_name",
                fix="choose another registration.model_name in the pipeline config; registered models "
                "are never overwritten",
            )
        for version in client.search_model_versions(f"name='{registration.name}'"):
            if version.tags.get(TAG_FINAL_RUN_ID) == tags[TAG_FINAL_RUN_ID]:
                return RegisteredModel(
                    registration.name, str(version.version), frozen_mapping(version.tags), reused=True
                )
    run_id = tags.get(TAG_CONVERSION_RUN_ID) or tags[TAG_FINAL_RUN_ID]
    client.log_artifacts(run_id, registration.path, MODEL_ARTIFACT_DIR)
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT_DIR}"
    version = client.create_model_version(
        registration.name, source=source, run_id=run_id, tags=tags, description=registration.description
    )
    return RegisteredModel(
        registration.name, str(version.version), frozen_mapping(dict(version.tags)), reused=False
    )


def _registered_model(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        return None
