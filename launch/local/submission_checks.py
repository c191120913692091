"""What the service checks before it queues a job: every resource the job references exists.

Azure ML refuses a job whose environment, compute or `azureml:<name>:<version>` data asset input
is not in the workspace, or which asks for more nodes than its cluster allows; the emulator
refuses it at `jobs.create_or_update` with the same exceptions, before anything is uploaded.
"""

from __future__ import annotations

from typing import Any

from launch.local.runner import instance_count
from launch.local.uris import name_version


def check_references(client: Any, job: Any, task: Any) -> None:
    """Refuse job `job` (its command: `task`) unless what it references exists, as the service does.

    Args:
        client: The `EmulatedMLClient` of the workspace.
        job: The submitted job entity (its compute and inputs are checked).
        task: The command it runs (the job itself, or a sweep's trial): its environment and nodes.

    Raises:
        ResourceNotFoundError: The environment, compute or a data asset input does not exist.
        ValidationException: The job asks for more nodes than its cluster allows.
    """
    from azure.ai.ml.exceptions import ValidationException
    from azure.core.exceptions import ResourceNotFoundError

    environment = str(task.environment or "")
    try:
        client.environments.get(*name_version(environment))
    except ResourceNotFoundError as error:
        raise ResourceNotFoundError(
            message=f"job {job.display_name!r}: environment {environment} is not registered in the "
            f"workspace ({error.message}); register it before submitting jobs that use it"
        ) from None
    compute = str(job.compute or "").removeprefix("azureml:")
    cluster = client.compute.get(compute)
    nodes = instance_count(task)
    if nodes > int(cluster.max_instances or 0):
        raise ValidationException(
            message=f"job {job.display_name!r} asks for {nodes} nodes but cluster {compute} has "
            f"max_instances={cluster.max_instances}",
            no_personal_data_message="instance_count exceeds the cluster's max_instances",
        )
    for input_name, value in (job.inputs or {}).items():
        path = str(getattr(value, "path", "") or "")
        if path.startswith("azureml:") and not path.startswith("azureml://"):
            reference = path.removeprefix("azureml:")
            asset, version = (reference.split("@")[0], None) if "@" in reference else name_version(path)
            try:
                client.data.get(asset, version)
            except ResourceNotFoundError as error:
                raise ResourceNotFoundError(
                    message=f"job {job.display_name!r}: input {input_name} names {path}: {error.message}"
                ) from None
