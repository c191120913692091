"""Every command line the builders write parses with the real training CLI (`run=False`).

This test imports torch (it is a test, not launch code): it substitutes sample values for the
placeholders and hands the arguments to `ner_lightning.cli.cli_main(args, run=False)`, so a
sweep parameter or stage flag that is not a real training argument fails here.
"""

from __future__ import annotations

import re
import shlex

import pytest

from launch.configs import load_config
from launch.job_specs import JobContext, build_dry_run, build_final_training, build_sweep
from launch.jobs import AssetRef, Choice, Distribution
from launch.search_space import PARAMETER_ARGUMENTS, format_cli_value, load_sweep_config
from tests.conftest import FIXTURES, REPO_ROOT
from tests.launch_azure.conftest import CONFIGS

cli = pytest.importorskip("ner_lightning.cli")
torch = pytest.importorskip("torch")
TINY_BERT = FIXTURES / "backbones" / "tiny-bert"
PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs|search_space)\.(\w+)\s*\}\}")


@pytest.fixture
def ctx() -> JobContext:
    return JobContext(
        experiment_name="exp",
        dataset=AssetRef("toy", "1", "f" * 64),
        environment=AssetRef("env", "1", "e" * 64),
        git_commit="abc",
        train_configs=(
            load_config(CONFIGS / "train" / "base.yaml"),
            load_config(CONFIGS / "train" / "cpu.yaml"),
        ),
    )


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)


def _args(command: str, tmp_path, samples: dict[str, str]) -> list[str]:
    values = {
        "inputs": {
            "train_config": str(CONFIGS / "train" / "base.yaml"),
            "overlay_1": str(CONFIGS / "train" / "cpu.yaml"),
            "data": str(FIXTURES / "toy_dataset"),
        },
        "outputs": {"model": str(tmp_path / "out")},
        "search_space": samples,
    }
    filled = PLACEHOLDER.sub(lambda m: values[m.group(1)][m.group(2)], command)
    words = shlex.split(filled)
    assert words[:4] == ["python", "-m", "ner_lightning", "fit"]
    return words[4:]


def _sample(name, dimension) -> str:
    if name == "backbone":  # hub names need the network; the argument is what is under test
        return str(TINY_BERT)
    if isinstance(dimension, Choice):
        return format_cli_value(dimension.values[-1])
    return format_cli_value((dimension.min_value + dimension.max_value) / 2)


def test_sweep_trial_command_reaches_every_parameter(ctx, tmp_path):
    sweep = load_sweep_config(CONFIGS / "sweep.yaml")
    spec = build_sweep(ctx, sweep)
    samples = {name: _sample(name, dim) for name, dim in sweep.search_space.items()}
    parsed = cli.cli_main(_args(spec.trial.command, tmp_path, samples), run=False)
    config = parsed.config
    for name, sample in samples.items():
        section, key = PARAMETER_ARGUMENTS[name].lstrip("-").split(".")
        value = config[section][key]
        assert format_cli_value(value) == sample or float(value) == pytest.approx(float(sample)), name
    assert parsed.trainer.max_epochs == int(samples["epochs"])


def test_all_known_parameters_are_real_cli_arguments(ctx, tmp_path):
    sample = {
        "backbone": str(TINY_BERT),
        "learning_rate": "0.001",
        "dropout": "0.2",
        "head": "crf",
        "use_crf": "true",
        "batch_size": "4",
        "epochs": "2",
        "weight_decay": "0.0",
        "warmup_ratio": "0.05",
        "crf_learning_rate": "0.01",
        "warmup_steps": "3",
        "gradient_accumulation_steps": "2",
        "max_grad_norm": "0.5",
        "combine_train_validation": "true",
        "early_stopping.enabled": "false",
        "early_stopping.patience": "4",
        "early_stopping.min_delta": "0.01",
    }
    assert set(sample) == set(PARAMETER_ARGUMENTS)
    spec = build_final_training(ctx, sample, seed=11, epochs=3)
    args = _args(spec.command, tmp_path, {})
    try:
        parsed = cli.cli_main(args, run=False)
    except SystemExit:
        # Until the ONNX export callback is registered in the CLI, check everything else, then flag it.
        at = args.index("--onnx_export.enabled")
        parsed = cli.cli_main(args[:at] + args[at + 2 :], run=False)
        _check_final(parsed)
        pytest.xfail(
            "ner_lightning/cli.py does not register --onnx_export.enabled yet (docs/architecture.md)"
        )
    _check_final(parsed)
    assert parsed.config["onnx_export"]["enabled"] is True


def _check_final(parsed) -> None:
    assert parsed.config["model"]["warmup_steps"] == 3 and parsed.config["early_stopping"]["patience"] == 4
    assert parsed.trainer.accumulate_grad_batches == 2 and parsed.trainer.gradient_clip_val == 0.5
    assert parsed.config["model"]["use_crf"] is True
    assert parsed.config["seed_everything"] == 11
    assert parsed.config["data"]["combine_train_validation"] is True
    assert parsed.config["early_stopping"]["enabled"] is False
    assert parsed.trainer.max_epochs == 3


def test_dry_run_and_multi_node_arguments_parse(ctx, tmp_path):
    dry = build_dry_run(ctx, limit_batches=2)
    parsed = cli.cli_main(_args(dry.command + f" --model.backbone {TINY_BERT}", tmp_path, {}), run=False)
    assert parsed.trainer.max_epochs == 1 and parsed.trainer.limit_train_batches == 2
    multi = build_final_training(
        ctx,
        {"backbone": str(TINY_BERT)},
        seed=1,
        distribution=Distribution(instance_count=2, process_count_per_instance=1),
    )
    parsed = _parse_tolerating_onnx(_args(multi.command, tmp_path, {}))
    assert parsed.config["trainer"]["num_nodes"] == 2 and parsed.config["trainer"]["devices"] in (1, "1")


def _parse_tolerating_onnx(full: list[str]):
    """Parse; while the CLI lacks --onnx_export.enabled (see the test above), parse without it."""
    try:
        return cli.cli_main(full, run=False)
    except SystemExit:
        at = full.index("--onnx_export.enabled")
        return cli.cli_main(full[:at] + full[at + 2 :], run=False)


def test_repository_root_is_the_code_snapshot():
    assert (REPO_ROOT / "ner_lightning" / "__main__.py").is_file()
