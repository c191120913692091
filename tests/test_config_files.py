"""Every file under configs/ is valid YAML and has a file name no other config shares.

Jobs are tagged `config_sha256.<file name>` and receive configs as files keyed by name, so two
configs with the same name would make those hashes ambiguous.
"""

from __future__ import annotations

from collections import Counter

import yaml

from tests.conftest import REPO_ROOT

CONFIG_FILES = sorted((REPO_ROOT / "configs").rglob("*.yaml"))


def test_config_file_names_are_unique() -> None:
    counts = Counter(path.name for path in CONFIG_FILES)
    assert [name for name, count in counts.items() if count > 1] == []


def test_every_config_is_a_yaml_mapping() -> None:
    assert len(CONFIG_FILES) >= 10
    for path in CONFIG_FILES:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict), f"{path} is not a YAML mapping"
