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
