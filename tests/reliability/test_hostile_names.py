"""Property: an output name from a hostile alphabet never costs the user a file (issue 14, acceptance 3).

`ner-data convert --output NAME` is where `ner_lightning` turns a user's name into a path. For any
NAME made of `..`, `/`, quotes, backslashes, unicode (right-to-left mark, CJK), spaces, NUL and up
to 300 characters, the command either writes a dataset folder exactly where NAME points or
refuses with a clear message (exit 2, no traceback), and in both cases the inputs and every other
file are unchanged and no temporary folder is left behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ner_lightning.data.cli import main

_PIECES = [
    "..",
    ".",
    "/",
    "'",
    '"',
    "\\",
    " ",
    "é",
    "名",
    "\u202e",
    "\x00",
    "a",
    "-",
    "data",
    "~",
    "$HOME",
    "*",
]
names = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join) | st.text(
    alphabet=st.sampled_from(["a", ".", "/", "é"]), min_size=250, max_size=300
)


def _digest(folder: Path, skip: Path | None) -> dict[str, str]:
    """sha256 of every file under `folder` (folders as "dir"), hidden ones included, outside `skip`."""
    result = {}
    for path in sorted(folder.rglob("*")):
        if skip is not None and _under(path, skip):
            continue
        key = str(path.relative_to(folder))
        result[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return result


@pytest.fixture(scope="module")
def sandbox() -> Path:
    with tempfile.TemporaryDirectory() as root:
        work = Path(root) / "sandbox" / "a" / "b" / "work"
        (work / "raw").mkdir(parents=True)
        (work / "raw" / "train.conll").write_text(
            "EU\tB-ORG\nrejects\tO\n\nPeter\tB-PER\n\n", encoding="utf-8"
        )
        (work / "raw" / "val.conll").write_text("Rome\tB-LOC\n\n", encoding="utf-8")
        (work / "notes.txt").write_text("not a dataset", encoding="utf-8")
        yield Path(root) / "sandbox"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names, overwrite=st.booleans())
@example(name="--", overwrite=False)  # argparse makes `--output=--` an empty list
def test_any_output_name_writes_only_where_it_points_or_is_refused(
    sandbox: Path, capsys: pytest.CaptureFixture[str], name: str, overwrite: bool
) -> None:
    work = sandbox / "a" / "b" / "work"
    target = Path(os.path.abspath(work / name.replace("\x00", "")))
    assume(target == sandbox or sandbox in target.parents)  # never let a generated name touch the real disk
    before = _digest(sandbox, skip=None)
    argv = ["convert", "--format", "conll", "--train", "raw/train.conll", "--validation", "raw/val.conll"]
    argv += [f"--output={name}"] + (["--overwrite"] if overwrite else [])
    previous = Path.cwd()
    os.chdir(work)
    try:
        status = main(argv)
    finally:
        os.chdir(previous)
    err = capsys.readouterr().err
    assert status in (0, 2), err
    assert "Traceback" not in err and "unexpected error" not in err, err
    after = _digest(sandbox, skip=None)
    if status == 2:
        assert "ner-data: error:" in err
        assert after == before, err  # refused: not one file changed, no temp folder left
    else:
        assert "\x00" not in name and (target / "train.jsonl").is_file()

        # Everything but the new folder and the parent folders made for it is as it was.
        def elsewhere(entries: dict[str, str]) -> dict[str, str]:
            return {
                k: v
                for k, v in entries.items()
                if not _under(target, sandbox / k) and not _under(sandbox / k, target)
            }

        changed = set(elsewhere(after).items()) ^ set(elsewhere(before).items())
        assert not changed, sorted(changed)


def _under(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or inside it."""
    return path == folder or folder in path.parents
