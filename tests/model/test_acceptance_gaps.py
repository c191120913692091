"""Issue 2 gap: a hub *name* (not a local path) that is not cached fails offline with the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

CODE = """
import sys
from ner_lightning.data.datamodule import NerDataModule
from ner_lightning.errors import ModelError
from ner_lightning.model.backbone import load_backbone

name = "ner-lightning-tests/no-such-model"
for load in (lambda: load_backbone(name), lambda: NerDataModule(sys.argv[1], tokenizer=name).setup("fit")):
    try:
        load()
    except ModelError as error:
        print("ModelError", error.field, "|", error.fix)
"""


def test_uncached_hub_name_fails_offline_and_says_how_to_use_a_local_folder(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
    }  # empty cache, no network
    result = subprocess.run(
        [sys.executable, "-c", CODE, str(REPO_ROOT / "tests" / "fixtures" / "toy_dataset")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2, result.stdout + result.stderr[-2000:]
    backbone, tokenizer = lines
    assert backbone.startswith("ModelError model.backbone |") and "local folder" in backbone
    assert tokenizer.startswith("ModelError") and "local folder" in tokenizer


def _gloo_worker(rank: int, port: int, data: list, result_file: str) -> None:
    import torch
    import torch.distributed as dist

    from ner_lightning.metrics import EntityF1
    from tests.model.test_metrics import LABELS, _rows

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        example, word, pred, gold = _rows(data)
        rows = torch.arange(len(example))
        # An exact partition of every word row (rank 1 also gets the samples a DistributedSampler repeats).
        chunk = rows[0::2] if rank == 0 else torch.cat([rows[1::2], torch.tensor([0, len(example) - 1])])
        metric = EntityF1(LABELS)
        metric.update(example[chunk], word[chunk], pred[chunk], gold[chunk])
        scores = metric.compute()
        if rank == 0:
            Path(result_file).write_text(repr((scores.precision, scores.recall, scores.f1)), encoding="utf-8")
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_gather_over_a_full_partition_equals_one_process(tmp_path: Path) -> None:
    """Issue 2 point 4: the existing gloo test leaves one word row out on odd row counts; this one covers all."""
    import socket

    import torch
    import torch.multiprocessing as mp

    from ner_lightning.metrics import EntityF1
    from tests.model.test_metrics import LABELS, _rows

    generator = torch.Generator().manual_seed(1)
    data = [
        [
            (int(p), int(g))
            for p, g in torch.randint(0, len(LABELS), (int(n), 2), generator=generator).tolist()
        ]
        for n in torch.randint(1, 9, (40,), generator=generator)
    ]
    single = EntityF1(LABELS)
    single.update(*_rows(data))
    expected = single.compute()
    # Per-rank scores differ from the whole: averaging them instead of gathering would fail this test.
    half = EntityF1(LABELS)
    example, word, pred, gold = _rows(data)
    half.update(example[0::2], word[0::2], pred[0::2], gold[0::2])
    assert half.compute().f1 != expected.f1
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result_file = tmp_path / "rank0.txt"
    mp.start_processes(
        _gloo_worker, args=(port, data, str(result_file)), nprocs=2, join=True, start_method="spawn"
    )
    assert result_file.read_text(encoding="utf-8") == repr((expected.precision, expected.recall, expected.f1))
