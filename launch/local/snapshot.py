"""Code snapshots and uploads of the emulated workspace, built the way azure-ai-ml builds them.

Azure ML runs a job inside a snapshot of its `code` folder minus what `.amlignore` (else
`.gitignore`) excludes, and uploads local input files to the default datastore under
`LocalUpload/<content hash>/<name>`. The emulator uses the SDK's own ignore-file logic
(`azure.ai.ml._utils._asset_utils.get_ignore_file`) and content hash, so a file that the
snapshot leaves out on Azure is missing here too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from launch.local.workspace import DEFAULT_DATASTORE, LocalWorkspace

#: Datastore folder of uploaded local inputs (the SDK's name).
UPLOAD_PREFIX = "LocalUpload"


def snapshot_files(code_dir: str | Path) -> list[tuple[str, str]]:
    """`(absolute path, relative path)` of every file Azure ML would upload from `code_dir`.

    Directories that the ignore file excludes are not descended into (same result as the SDK's
    per-file check, without walking a large ignored workspace folder).
    """
    from azure.ai.ml._utils._asset_utils import get_ignore_file

    root = Path(code_dir).resolve()
    ignore = get_ignore_file(root)
    files = []
    for folder, dirs, names in os.walk(root):
        # A pattern excluding a folder excludes every file below it: probe with a child path.
        dirs[:] = sorted(d for d in dirs if not ignore.is_file_excluded(Path(folder, d, "_")))
        for name in sorted(names):
            path = Path(folder, name)
            if path.is_file() and not ignore.is_file_excluded(path):
                files.append((str(path), path.relative_to(root).as_posix()))
    return files


def content_hash(files: list[tuple[str, str]]) -> str:
    """The SDK's content hash of a file list (what names a code snapshot on Azure ML)."""
    from azure.ai.ml._utils._asset_utils import _get_file_list_content_hash

    return _get_file_list_content_hash(files)


def _copy_into(target: Path, files: list[tuple[str, str]]) -> None:
    """Copy `files` to `target` atomically (staging folder, then rename); a no-op when it exists."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for source, relative in files:
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        try:
            staging.rename(target)
        except OSError:  # another submission wrote the same content first
            if not target.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def snapshot_code(workspace: LocalWorkspace, code_dir: str | Path) -> tuple[str, Path]:
    """Store the code snapshot of `code_dir` (content-addressed) and return `(hash, folder)`."""
    files = snapshot_files(code_dir)
    digest = content_hash(files)
    folder = workspace.codes_dir / digest
    _copy_into(folder, files)
    return digest, folder


def upload(workspace: LocalWorkspace, path: str | Path) -> str:
    """Upload a local file or folder to the default datastore; returns its `azureml://` URI.

    Content-addressed like the SDK's upload: the same content is stored once.
    """
    source = Path(path).resolve()
    if source.is_dir():
        files = [(str(p), p.relative_to(source).as_posix()) for p in sorted(source.rglob("*")) if p.is_file()]
    else:
        files = [(str(source), source.name)]
    digest = content_hash(files)
    relative = f"{UPLOAD_PREFIX}/{digest}/{source.name}"
    target = workspace.datastore_dir / relative
    if source.is_dir():
        _copy_into(target, files)
    else:
        _copy_into(target.parent, files)
    return f"azureml://datastores/{DEFAULT_DATASTORE}/paths/{relative}"
