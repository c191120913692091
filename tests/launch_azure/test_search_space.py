"""configs/sweep.yaml and every bad search-space input."""

from __future__ import annotations

import pytest

from launch.errors import LaunchError
from launch.jobs import Choice, LogUniform, Uniform
from launch.search_space import PARAMETER_ARGUMENTS, load_sweep_config
from tests.launch_azure.conftest import CONFIGS, write

GOOD = """\
sampling_algorithm: random
seed: 3
search_space:
  learning_rate: {type: loguniform, min_value: 1.0e-5, max_value: 1.0e-3}
  use_crf: {type: choice, values: [true, false]}
early_termination: {policy: bandit, slack_factor: 0.2, evaluation_interval: 1, delay_evaluation: 2}
limits: {max_total_trials: 4, max_concurrent_trials: 2, timeout_s: 600, trial_timeout_s: 300}
"""


def test_project_sweep_config_parses_with_all_six_parameters():
    sweep = load_sweep_config(CONFIGS / "sweep.yaml")
    assert set(sweep.search_space) == {
        "backbone",
        "learning_rate",
        "batch_size",
        "epochs",
        "dropout",
        "use_crf",
    }
    assert isinstance(sweep.search_space["learning_rate"], LogUniform)
    assert isinstance(sweep.search_space["dropout"], Uniform)
    assert isinstance(sweep.search_space["backbone"], Choice)
    backbones = " ".join(sweep.search_space["backbone"].values)
    assert "deberta" in backbones.lower() and "distilbert" in backbones.lower()
    assert sweep.early_termination is not None
    assert sweep.limits.max_concurrent_trials <= sweep.limits.max_total_trials


def test_good_config_values(tmp_path):
    sweep = load_sweep_config(write(tmp_path / "sweep.yaml", GOOD))
    assert sweep.search_space["use_crf"] == Choice(values=(True, False))
    assert sweep.early_termination.policy == "bandit" and sweep.early_termination.slack_factor == 0.2
    assert sweep.limits.trial_timeout_s == 300 and sweep.seed == 3


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("  use_crf:", "  hidden_size:", "search_space.hidden_size", "unknown sweep parameter"),
        ("values: [true, false]", "values: []", "search_space.use_crf.values", "non-empty"),
        ("min_value: 1.0e-5", "min_value: 1.0e-2", "search_space.learning_rate.min_value", "not below"),
        ("min_value: 1.0e-5", "min_value: 0", "search_space.learning_rate.min_value", "must be > 0"),
        ("{type: loguniform", "{type: normal", "search_space.learning_rate.type", "needs a type"),
        (
            "sampling_algorithm: random",
            "sampling_algorithm: grid",
            "search_space.learning_rate",
            "grid sampling",
        ),
        (
            "sampling_algorithm: random",
            "sampling_algorithm: bayesian",
            "early_termination.policy",
            "bayesian",
        ),
        ("sampling_algorithm: random", "sampling_algorithm: sobol", "sampling_algorithm", "unknown sampling"),
        ("policy: bandit", "policy: truncation", "early_termination.policy", "unknown early-termination"),
        ("max_concurrent_trials: 2", "max_concurrent_trials: 9", "limits.max_concurrent_trials", "exceeds"),
        ("max_total_trials: 4", "max_total_trials: 0", "limits.max_total_trials", "positive integer"),
    ],
)
def test_bad_search_space_names_the_field_and_the_fix(tmp_path, old, new, field, message):
    assert old in GOOD
    path = write(tmp_path / "sweep.yaml", GOOD.replace(old, new))
    with pytest.raises(LaunchError) as info:
        load_sweep_config(path)
    assert info.value.field == field
    assert message in info.value.message
    assert info.value.fix and info.value.path == str(path)
    assert info.value.line is not None


def test_unknown_parameter_error_lists_the_known_ones(tmp_path):
    with pytest.raises(LaunchError) as info:
        load_sweep_config(write(tmp_path / "s.yaml", GOOD.replace("  use_crf:", "  lr:")))
    for name in PARAMETER_ARGUMENTS:
        # Dotted keys (early_stopping.*) are final_training.yaml keys, not sweep parameters.
        assert (name in info.value.fix) == ("." not in name), name


def test_empty_search_space_is_refused(tmp_path):
    with pytest.raises(LaunchError, match="search space is empty"):
        load_sweep_config(write(tmp_path / "s.yaml", "sampling_algorithm: random\nsearch_space: {}\n"))


def test_bayesian_without_policy_is_accepted(tmp_path):
    text = GOOD.replace("sampling_algorithm: random", "sampling_algorithm: bayesian").replace(
        "policy: bandit", "policy: none"
    )
    assert load_sweep_config(write(tmp_path / "s.yaml", text)).early_termination is None
