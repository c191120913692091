"""Run one command job of the emulated workspace: the runtime contract an Azure ML job sees.

Given the loaded job entity (what `job.yaml` says, nothing else), the runner:

- copies the code snapshot into the job's working directory and runs the command there;
- resolves every input (`azureml:` assets, `azureml://jobs/.../outputs/...`, datastore uploads)
  and mounts it under the job's own `cap/data-capability/wd/INPUT_<name>` for the job's lifetime,
  creates every output folder, and substitutes `${{inputs.X}}`, `${{outputs.X}}` and (for sweep
  trials) `${{search_space.X}}`;
- runs in the registered environment (only its declared packages, `launch/local/environments.py`)
  with the variables Azure ML sets: `AZUREML_RUN_ID`, `MLFLOW_TRACKING_URI`, `MLFLOW_RUN_ID`,
  `MLFLOW_EXPERIMENT_NAME`/`_ID`, `AZURE_ML_INPUT_<name>`/`AZURE_ML_OUTPUT_<name>`,
  `AZUREML_CR_*`, and for a `PyTorchDistribution` one process per rank with `RANK`, `LOCAL_RANK`,
  `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `NODE_RANK`, `GROUP_RANK`, `MASTER_ADDR`, `MASTER_PORT`;
- puts all processes of the job in one process group (its own session) with a watchdog that
  ends the group when this process dies, stops the group on cancel or timeout (SIGTERM, then
  SIGKILL; `launch/local/process_group.py`), and writes `user_logs/std_log*.txt`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch.errors import LaunchError
from launch.local.environments import build_environment, environment_path, undeclared_hint
from launch.local.process_group import release_watchdog, start_watchdog, stop_group
from launch.local.uris import name_version, resolve_uri

PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs|search_space)\.([A-Za-z0-9_]+)\s*\}\}")
#: Lines of the log tail reported as a failed job's error.
ERROR_TAIL_LINES = 40
#: Variables of the caller's environment a job inherits (Azure's image has its own; these are neutral).
INHERITED = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "LOGNAME", "TERM")

#: Polled with the job's MLflow run id while it runs; True stops it (sweep early termination).
Monitor = Callable[[str], bool]


def substitute(command: str, values: Mapping[str, Mapping[str, Any]]) -> str:
    """Replace every `${{kind.name}}` in `command`, shell-quoted.

    Raises:
        LaunchError: A placeholder has no value (an unbound input, output or search dimension).
    """

    def replace(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2)
        if name not in values.get(kind, {}):
            noun = "search dimension" if kind == "search_space" else kind[:-1]
            raise LaunchError(
                f"the command uses ${{{{{kind}.{name}}}}} but the job defines no such {noun}",
                field=f"{kind}.{name}",
                fix=f"add `{name}` to the job's {kind} or remove it from the command",
            )
        return shlex.quote(str(values[kind][name]))

    return PLACEHOLDER.sub(replace, command)


def tail(path: Path, lines: int = ERROR_TAIL_LINES) -> str:
    """The last `lines` lines of a log file ('' when missing)."""
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@dataclass(frozen=True)
class Outcome:
    """How a job's processes ended."""

    status: str
    error: str = ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _world(job: Any) -> tuple[int, int]:
    """(nodes, processes per node) of the job's distribution (1, 1 without one)."""
    distribution = getattr(job, "distribution", None)
    nodes = instance_count(job)
    if distribution is None or str(getattr(distribution, "type", "")).lower() != "pytorch":
        return nodes if distribution is not None else 1, 1
    return nodes, int(getattr(distribution, "process_count_per_instance", None) or 1)


def _written_outside_outputs(snapshot: Path, workdir: Path) -> list[str]:
    """Files the job created or changed in its working directory (lost on Azure ML), relative paths."""
    stray = []
    for path in sorted(workdir.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(workdir)
        original = snapshot / relative
        if (
            not original.is_file()
            or original.stat().st_size != path.stat().st_size
            or (original.read_bytes() != path.read_bytes())
        ):
            stray.append(relative.as_posix())
    return stray


def _mount(source: Path, mounts: Path, name: str) -> Path:
    """Mount an input for one job: `INPUT_<name>` (a folder), or `INPUT_<name>/<file name>` (a file).

    Azure ML mounts inputs under the job's own capability folder; the emulator links them there,
    so the paths a job sees are its own and vanish when it ends.
    """
    mount = mounts / f"INPUT_{name}"
    mounts.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        if not mount.exists():
            mount.symlink_to(source, target_is_directory=True)
        return mount
    mount.mkdir(exist_ok=True)
    if not (mount / source.name).exists():
        (mount / source.name).symlink_to(source)
    return mount / source.name


def instance_count(job: Any) -> int:
    """Nodes a job (or sweep trial) asks for: `resources.instance_count`, 1 when absent."""
    resources = getattr(job, "resources", None)
    value = (
        resources.get("instance_count")
        if isinstance(resources, dict)
        else getattr(resources, "instance_count", None)
    )
    return int(value or 1)


def run_command_job(
    client: Any,
    name: str,
    job: Any,
    *,
    run_id: str,
    experiment_id: str,
    search_values: Mapping[str, Any] | None = None,
    cancel: threading.Event,
    monitor: Monitor | None = None,
    poll_s: float = 0.5,
) -> Outcome:
    """Run the command job `job` (loaded from its YAML) as job `name`; returns its outcome.

    Args:
        client: The `EmulatedMLClient` (resolves inputs, environments, records).
        name: Job name (= MLflow run id on Azure ML).
        job: The loaded `CommandJob` (a sweep trial: the sweep's trial with its inputs).
        run_id: MLflow run of the job.
        experiment_id: Its MLflow experiment.
        search_values: `${{search_space.X}}` values of a sweep trial.
        cancel: Set to stop the job (status Canceled).
        monitor: Polled with the run id; True stops the job (sweep early termination).
        poll_s: Seconds between polls.
    """
    store = client.jobs.store
    job_dir = store.job_dir(name)
    log_dir = job_dir / "user_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    setup_log = log_dir / "std_log.txt"
    try:
        environment = client.environments.get(*name_version(str(job.environment)))
        env_dir = build_environment(
            client.workspace.envs_dir / environment.name / str(environment.version), environment.conda_file
        )
        workdir = job_dir / "wd"
        if not workdir.exists():
            shutil.copytree(str(job.code), workdir, symlinks=True)
        inputs = {}
        mounts = job_dir / "cap" / "data-capability" / "wd"
        for input_name, value in (job.inputs or {}).items():
            path = getattr(value, "path", None)
            if path is None:  # a literal value (a number, a string)
                inputs[input_name] = value
                continue
            inputs[input_name] = str(
                _mount(resolve_uri(client, str(path), f"inputs.{input_name}"), mounts, input_name)
            )
        outputs = {}
        for output_name in job.outputs or {}:
            folder = store.output_dir(name, output_name)
            folder.mkdir(parents=True, exist_ok=True)
            outputs[output_name] = str(folder)
        command = substitute(
            job.command, {"inputs": inputs, "outputs": outputs, "search_space": dict(search_values or {})}
        )
    except LaunchError as error:
        setup_log.write_text(f"job setup failed: {error}\n", encoding="utf-8")
        return Outcome("Failed", str(error))
    store.update(name, command=command, resolved_inputs={k: str(v) for k, v in inputs.items()})
    env = {key: os.environ[key] for key in INHERITED if key in os.environ}
    env.update({str(k): str(v) for k, v in (job.environment_variables or {}).items()})
    env.update(
        {
            "PATH": environment_path(env_dir),
            "PYTHONUNBUFFERED": "1",
            "AZUREML_RUN_ID": name,
            "AZUREML_ARM_WORKSPACE_NAME": client.workspace_name,
            "AZUREML_ARM_RESOURCEGROUP": client.resource_group_name,
            "AZUREML_ARM_SUBSCRIPTION": client.subscription_id,
            "AZUREML_ARM_PROJECT_NAME": str(job.experiment_name or "Default"),
            "AZUREML_CR_EXECUTION_WORKING_DIR_PATH": str(workdir),
            "AZUREML_CR_DATA_CAPABILITY_PATH": str(job_dir / "cap" / "data-capability"),
            "MLFLOW_TRACKING_URI": client.workspace.tracking_uri,
            "MLFLOW_RUN_ID": run_id,
            "MLFLOW_EXPERIMENT_NAME": str(job.experiment_name or "Default"),
            "MLFLOW_EXPERIMENT_ID": experiment_id,
            **{f"AZURE_ML_INPUT_{k}": str(v) for k, v in inputs.items()},
            **{f"AZURE_ML_OUTPUT_{k}": v for k, v in outputs.items()},
        }
    )
    nodes, per_node = _world(job)
    world = nodes * per_node
    port = _free_port()
    processes: list[subprocess.Popen] = []
    logs = []
    log_paths: list[Path] = []
    pgid = 0
    watchdog: subprocess.Popen | None = None
    write_end: int | None = None
    try:
        for rank in range(world):
            rank_env = dict(env)
            if world > 1 or per_node > 1:
                rank_env.update(
                    RANK=str(rank),
                    LOCAL_RANK=str(rank % per_node),
                    WORLD_SIZE=str(world),
                    LOCAL_WORLD_SIZE=str(per_node),
                    NODE_RANK=str(rank // per_node),
                    GROUP_RANK=str(rank // per_node),
                    MASTER_ADDR="127.0.0.1",
                    MASTER_PORT=str(port),
                )
            log_path = log_dir / ("std_log.txt" if world == 1 else f"std_log_process_{rank:02d}.txt")
            log_paths.append(log_path)
            handle = open(log_path, "ab")  # noqa: SIM115 - closed below, after the process ends
            logs.append(handle)
            if rank == 0:
                handle.write(f"$ {command}\n".encode())
                handle.flush()
            process = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=workdir,
                env=rank_env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                # The job's processes share one process group of their own: stopping the job stops
                # everything it started, training workers included, and a terminal's Ctrl-C reaches
                # the launcher only (which cancels its jobs).
                process_group=0 if rank == 0 else pgid,
            )
            if rank == 0:
                pgid = process.pid
                watchdog, write_end = start_watchdog(pgid, name)
            processes.append(process)
        store.update(name, pgid=pgid, pids=[p.pid for p in processes], watchdog_pid=watchdog and watchdog.pid)
        outcome = _wait(processes, pgid, job, run_id, cancel, monitor, poll_s)
    except BaseException:
        if pgid:
            stop_group(pgid, processes)
        raise
    finally:
        release_watchdog(watchdog, write_end)
        for handle in logs:
            handle.close()
        # Inputs are mounted for the job's lifetime only, as on Azure ML: a path a job recorded
        # (in a checkpoint, a config) does not lead into another job's inputs.
        shutil.rmtree(job_dir / "cap", ignore_errors=True)
    stray = _written_outside_outputs(Path(str(job.code)), workdir)
    if stray:
        store.update(name, written_outside_outputs=stray)
        with open(log_paths[0], "a", encoding="utf-8") as handle:
            handle.write(
                f"\nWARNING: the job wrote {len(stray)} file(s) outside its outputs, which Azure ML does not "
                f"keep: {', '.join(stray[:10])}. Write results under ${{{{outputs.<name>}}}}.\n"
            )
    if outcome.status == "Failed":
        log_text = "\n".join(tail(path) for path in log_paths)
        hint = undeclared_hint(
            log_text,
            f"{environment.name}:{environment.version}",
            "the environment's conda file (configs/azure/environment/conda.yaml)",
            (env_dir / "declared.txt").read_text(encoding="utf-8").split(),
        )
        error = f"{outcome.error}\n{tail(log_paths[0])}".strip()
        return Outcome("Failed", f"{error}\n{hint}".strip() if hint else error)
    return outcome


def _wait(
    processes: list[subprocess.Popen],
    pgid: int,
    job: Any,
    run_id: str,
    cancel: threading.Event,
    monitor: Monitor | None,
    poll_s: float,
) -> Outcome:
    limits = getattr(job, "limits", None)
    timeout_s = getattr(limits, "timeout", None)
    started = time.monotonic()
    while True:
        codes = [p.poll() for p in processes]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            stop_group(pgid, processes)
            code = failed[0]
            signame = (
                f" ({signal.Signals(-code).name})" if code < 0 and -code in signal.valid_signals() else ""
            )
            return Outcome("Failed", f"the job process exited with status {code}{signame}")
        if all(c == 0 for c in codes):
            return Outcome("Completed")
        if cancel.is_set():
            stop_group(pgid, processes)
            return Outcome("Canceled", "the job was canceled")
        if timeout_s and time.monotonic() - started > float(timeout_s):
            stop_group(pgid, processes)
            return Outcome("Failed", f"the job ran past its limits.timeout of {timeout_s}s and was stopped")
        if monitor is not None and monitor(run_id):
            stop_group(pgid, processes)
            return Outcome("Canceled", "stopped early by the sweep's early-termination policy")
        cancel.wait(poll_s)
