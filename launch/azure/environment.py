"""The job environment (base image + conda file) as a versioned Azure ML environment (P1-3.3).

The definition lives in `configs/azure/environment/`. Its fingerprint (sha256 over the image
name and the conda file's bytes) is stored in a tag, so a registered version is immutable: the
same version with another definition is refused, the same definition is reused. One environment
version serves the dry run, the sweep, the final training and the conversion.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from launch.azure.versions import ensure_version
from launch.configs import LoadedConfig, load_config
from launch.errors import LaunchError
from launch.jobs import AssetRef, EnvironmentSpec

#: Tag holding the definition fingerprint on a registered environment version.
TAG_ENVIRONMENT_FINGERPRINT = "definition_fingerprint"
ENVIRONMENT_FILE = "environment.yaml"


def parse_environment(config: LoadedConfig) -> EnvironmentSpec:
    """Read `environment.yaml` (name, version, image, conda_file relative to it).

    Raises:
        LaunchError: A field is missing, or the conda file does not exist.
    """
    values = {}
    for key in ("name", "version", "image", "conda_file"):
        value = config.get(key)
        if value is None or not str(value).strip():
            raise config.error(f"{key} is missing", field=key, fix=f"set {key} in {config.name}")
        values[key] = str(value).strip()
    conda = Path(values["conda_file"])
    if not conda.is_absolute():
        conda = config.path.parent / conda
    if not conda.is_file():
        raise config.error(
            f"conda file {conda} does not exist",
            field="conda_file",
            fix="point conda_file at the conda YAML file",
        )
    return EnvironmentSpec(
        name=values["name"],
        version=values["version"],
        image=values["image"],
        conda_file=str(conda.resolve()),
        description=str(config.get("description", "") or ""),
    )


def load_environment(folder_or_file: str | Path) -> EnvironmentSpec:
    """Load the environment definition from `configs/azure/environment/` (or its environment.yaml)."""
    path = Path(folder_or_file)
    return parse_environment(load_config(path / ENVIRONMENT_FILE if path.is_dir() else path))


def environment_fingerprint(spec: EnvironmentSpec) -> str:
    """sha256 of the definition: base image name and the conda file's bytes."""
    digest = hashlib.sha256()
    digest.update(spec.image.encode("utf-8") + b"\0")
    try:
        digest.update(Path(spec.conda_file).read_bytes())
    except FileNotFoundError:
        raise LaunchError(
            "conda file does not exist", path=spec.conda_file, field="conda_file", fix="restore or repoint it"
        ) from None
    return digest.hexdigest()


def register_environment(
    ml_client: Any, spec: EnvironmentSpec, fingerprint: str | None = None
) -> tuple[AssetRef, bool]:
    """Register the environment version, or reuse it when its definition is unchanged.

    Args:
        ml_client: An `azure.ai.ml.MLClient`.
        spec: The environment definition.
        fingerprint: Definition fingerprint (computed from `spec` when None).

    Returns:
        The environment reference and whether an existing version was reused.

    Raises:
        LaunchError: The version exists with another definition.
    """
    fingerprint = fingerprint or environment_fingerprint(spec)

    def create() -> Any:
        from azure.ai.ml.entities import Environment

        environment = Environment(
            name=spec.name,
            version=spec.version,
            image=spec.image,
            conda_file=spec.conda_file,
            description=spec.description,
            tags={TAG_ENVIRONMENT_FINGERPRINT: fingerprint},
        )
        return ml_client.environments.create_or_update(environment)

    _, reused = ensure_version(
        ml_client.environments,
        kind="environment",
        name=spec.name,
        version=spec.version,
        fingerprint=fingerprint,
        fingerprint_tag=TAG_ENVIRONMENT_FINGERPRINT,
        create=create,
    )
    return AssetRef(name=spec.name, version=spec.version, fingerprint=fingerprint), reused
