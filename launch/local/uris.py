"""Resolve the references a job's inputs hold to folders of the emulated workspace.

The forms Azure ML accepts and this project uses:

- `azureml:<name>:<version>` and `azureml:<name>@latest`: a registered data asset;
- `azureml://jobs/<job>/outputs/<output>[/paths/<relative path>]`: an output of an earlier job;
- `azureml://datastores/<datastore>/paths/<relative path>`: a datastore path (uploads).

A reference that does not resolve fails the job with a message naming the reference and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from launch.errors import LaunchError
from launch.jobs import job_output_uri

#: `azureml:<name>:<version>` (the SDK drops the `azureml:` prefix when it loads a job).
_ASSET = re.compile(r"^(?:azureml:)?(?!//)([A-Za-z0-9][A-Za-z0-9_.-]*)(?::([A-Za-z0-9_.-]+)|@latest)$")
_JOB_OUTPUT = re.compile(r"^azureml://jobs/([^/]+)/outputs/([^/]+)(?:/paths/(.*))?/?$")
_DATASTORE = re.compile(r"^azureml://datastores/([^/]+)/paths/(.*)$")


class UnresolvedReference(LaunchError):
    """A job input names an asset, job output or datastore path that does not exist."""


def name_version(reference: str) -> tuple[str, str | None]:
    """`azureml:name:version` (or `name:version`, `azureml:name@latest`) -> (name, version)."""
    text = reference.removeprefix("azureml:")
    if "@" in text:
        return text.split("@", 1)[0], None
    name, _, version = text.partition(":")
    return name, version or None


def resolve_uri(client: Any, uri: str, field: str = "inputs") -> Path:
    """The local path behind `uri` in the emulated workspace of `client`.

    Raises:
        UnresolvedReference: Naming the reference, what is missing and the fix.
    """
    from azure.core.exceptions import ResourceNotFoundError

    workspace = client.workspace
    text = str(uri)
    match = _DATASTORE.match(text)
    if match:
        datastore, relative = match.groups()
        path = workspace.root / "datastores" / datastore / relative
        if not path.exists():
            raise UnresolvedReference(
                f"{text} does not exist in datastore {datastore}",
                field=field,
                fix="upload the file again (resubmit the job) or fix the path",
            )
        return path
    match = _JOB_OUTPUT.match(text)
    if match:
        job, output, relative = match.groups()
        record = client.jobs.store.read(job)
        if record is None:
            raise UnresolvedReference(
                f"{text} names job {job!r}, which does not exist in this workspace",
                field=field,
                fix="reference the output of a job that was submitted here: "
                "azureml://jobs/<job name>/outputs/<output name>",
            )
        declared = record.get("outputs", [])
        if output not in declared:
            raise UnresolvedReference(
                f"{text} names output {output!r}, but job {job} declares only "
                f"{', '.join(declared) or 'no outputs'}",
                field=field,
                fix=f"use one of: {', '.join(job_output_uri(job, o) for o in declared)}",
            )
        path = client.jobs.store.output_dir(job, output) / (relative or "")
        if not path.exists():
            raise UnresolvedReference(
                f"{text} does not exist (job {job} is {record.get('status')} and did not write it)",
                field=field,
                fix="reference a path the job wrote, or rerun the job that writes it",
            )
        return path
    match = _ASSET.match(text)
    if match:
        name, version = match.groups()
        try:
            asset = client.data.get(name, version) if version else client.data.get(name, label="latest")
        except ResourceNotFoundError as error:
            raise UnresolvedReference(
                f"data asset {text} does not exist: {error.message}",
                field=field,
                fix="register the data asset version first (the pipeline's data_asset step), or fix the version",
            ) from None
        return resolve_uri(client, str(asset.path), field)
    raise UnresolvedReference(
        f"{text!r} is not a reference Azure ML resolves for a job input",
        field=field,
        fix="use azureml:<name>:<version>, azureml://jobs/<job>/outputs/<output>[/paths/<path>] "
        "or a local path (uploaded at submission)",
    )
