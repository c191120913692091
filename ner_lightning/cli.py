"""Command line of training jobs: `python -m ner_lightning fit|validate|test|predict --config ...`.

A `LightningCLI` over `TokenClassifier` and `NerDataModule`. Values known only at run time flow by
links, never written twice: `model.backbone` -> `data.tokenizer`, `data.label_names` ->
`model.label_names`, `output_dir` -> the checkpoint folder and the trainer's root folder.

Also: `--threads` (intra-op threads, recorded with the run), test-split scoring after `fit`
(`--test_after_fit`), plain progress lines in job logs (`--progress_log.*`), and `test`/`predict`/
`validate --ckpt_path` rebuilding the model and its windowing from the checkpoint alone.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

from ner_lightning.callbacks import EpochSeed, ProgressLog, ToggleableEarlyStopping
from ner_lightning.config_files import check_config_files
from ner_lightning.console import error_boundary
from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    EFFECTIVE_CONFIG_FILE,
    ENV_CHECKPOINT_PATH,
    ENV_MLFLOW_RUN_ID,
    ENV_MLFLOW_TRACKING_URI,
    ONNX_DIR,
    PRIMARY_METRIC,
    PRIMARY_METRIC_GOAL,
    TEST_ENTITY_TABLE,
    TEST_SPLIT,
)
from ner_lightning.data.datamodule import NerDataModule
from ner_lightning.model.heads import available_heads
from ner_lightning.model.module import TokenClassifier
from ner_lightning.onnx.callback import OnnxExport
from ner_lightning.quiet import quiet_third_party_logs
from ner_lightning.threads import resolve_threads
from ner_lightning.tracking import DEFAULT_ARTIFACT_DIR, DEFAULT_STORE_FILE, EnvMLFlowLogger
from ner_lightning.validation import check_resume_checkpoint

#: Data settings a checkpoint's model was trained with, reused by `test`/`predict`/`validate --ckpt_path`
#: (the tokenizer follows `model.backbone`).
MODEL_DATA_SETTINGS = ("max_length", "stride", "label_all_tokens")
#: MLflow artifact of the per-type test scores table.
TEST_TABLE_FILE = TEST_ENTITY_TABLE

#: Default job output folder (jobs always pass --output_dir).
DEFAULT_OUTPUT_DIR = "outputs"


def onnx_dir(output_dir: str) -> str:
    """`<output_dir>/onnx`, the model folder the ONNX export callback writes."""
    return os.path.join(output_dir, ONNX_DIR)


def checkpoint_dir(output_dir: str) -> str:
    """`<output_dir>/checkpoints`, where `best.ckpt` and `last.ckpt` go."""
    return os.path.join(output_dir, CHECKPOINT_DIR)


class SaveConfigToOutputDir(SaveConfigCallback):
    """Write the fully resolved config into the output folder (`config.yaml` for fit, `config_<stage>.yaml` else).

    Lightning's default writes to the logger's folder, which an MLflow logger with a database store has none of.
    """

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.already_saved:
            return
        name = self.config_filename if stage == "fit" else f"config_{stage}.yaml"
        if trainer.is_global_zero:
            folder = Path(trainer.default_root_dir)
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config, str(folder / name), skip_none=False, overwrite=True, multifile=self.multifile
            )
            if stage == "fit":
                self._write_effective_config(folder / CHECKPOINT_DIR)
        self.already_saved = trainer.strategy.broadcast(True)

    def _write_effective_config(self, folder: Path) -> None:
        """`checkpoints/effective_config.json`: the parsed config this run trains with, next to its checkpoints.

        What a launcher recorded about the run (a final-training variant's metadata) can be checked
        against it; `environment` holds the variables the plan names (`CHECKPOINT_PATH`).
        """
        effective = json.loads(self.parser.dump(self.config, format="json", skip_none=False, skip_check=True))
        effective["environment"] = {ENV_CHECKPOINT_PATH: os.environ.get(ENV_CHECKPOINT_PATH)}
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{EFFECTIVE_CONFIG_FILE}.tmp"
        temporary.write_text(json.dumps(effective, indent=2, sort_keys=True, default=str), encoding="utf-8")
        temporary.replace(folder / EFFECTIVE_CONFIG_FILE)


class NerArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, whose errors about `model.head` list the available heads."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if 'key "model.head"' in message:
            message += (
                f"\n  Available heads: {available_heads()}; or the class path of any "
                "ner_lightning.model.heads.TokenHead subclass (docs/heads.md)"
            )
        super().error(message, ex)


class NerLightningCLI(LightningCLI):
    """LightningCLI with the job output folder, checkpointing on `val_f1`, early stopping and provenance logging."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--output_dir",
            type=str,
            default=DEFAULT_OUTPUT_DIR,
            help="Job output folder: checkpoints/best.ckpt, checkpoints/last.ckpt, the resolved config (and onnx/).",
        )
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": PRIMARY_METRIC,
                "checkpoint.mode": "max" if PRIMARY_METRIC_GOAL == "maximize" else "min",
                "checkpoint.filename": BEST_CHECKPOINT.removesuffix(".ckpt"),
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": True,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.enable_version_counter": False,
            }
        )
        parser.link_arguments("output_dir", "checkpoint.dirpath", compute_fn=checkpoint_dir)
        parser.link_arguments("output_dir", "trainer.default_root_dir")
        parser.add_lightning_class_args(ToggleableEarlyStopping, "early_stopping")
        parser.link_arguments("model.backbone", "data.tokenizer")
        parser.link_arguments("data.label_names", "model.label_names", apply_on="instantiate")
        parser.add_lightning_class_args(OnnxExport, "onnx_export")
        parser.link_arguments("output_dir", "onnx_export.output_dir", compute_fn=onnx_dir)
        parser.add_lightning_class_args(ProgressLog, "progress_log")
        parser.add_lightning_class_args(EpochSeed, "epoch_seed")
        parser.add_argument(
            "--threads",
            type=int | None,
            default=None,
            help="Intra-op CPU threads (default: the cores this process may use, from its affinity, cgroup "
            "quota and OMP_NUM_THREADS); more than that warns and uses the available cores. Logged as param.",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, score the best checkpoint on the test split when the dataset has one "
            "(val_f1 stays the selection metric).",
        )

    def _subcommand_config(self) -> Any:
        return self.config.get(self.subcommand) if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        """Keep this job's paths on resume, set the intra-op threads, keep the default MLflow store inside
        the output folder."""
        self._keep_given_paths_on_resume()
        config = self._subcommand_config()
        self._keep_last_epoch_when_training_on_validation(config)
        self.threads, self.cores = resolve_threads(config.get("threads"))
        torch.set_num_threads(self.threads)
        rank_zero_info(
            f"intra-op threads: {self.threads} (cores available: {self.cores.count}, "
            f"limited by {self.cores.limited_by})"
        )
        default_tracking_store(config)

    @staticmethod
    def _keep_last_epoch_when_training_on_validation(config: Any) -> None:
        """With `data.combine_train_validation`, `best.ckpt` is the last epoch (`checkpoint.monitor: null`).

        The validation split is then part of the training data: its F1 cannot choose an epoch, and a
        run resumed in another folder starts without the best score, so a monitored "best" would
        differ between an interrupted and an uninterrupted final training.
        """
        if config is None or not config.get("data.combine_train_validation"):
            return
        if config.get("checkpoint.monitor") is not None:
            rank_zero_info(
                "training on train + validation: checkpoints/best.ckpt is the last epoch "
                f"(checkpoint.monitor {config.get('checkpoint.monitor')} -> null)"
            )
            config["checkpoint.monitor"] = None

    def _keep_given_paths_on_resume(self) -> None:
        """When resuming, keep this job's backbone and tokenizer over those the checkpoint recorded.

        LightningCLI copies a resumed checkpoint's hyperparameters into the config (and the link to
        `data.tokenizer` follows); the backbone there is a path of the job that wrote it (on Azure ML
        its input mount, gone once that job ended).
        """
        subcommand = self.config.get("subcommand")
        if not subcommand or not self.config.get(f"{subcommand}.ckpt_path"):
            return
        for key, given in getattr(self, "_given_paths", {}).items():
            if given:
                self.config[f"{subcommand}.{key}"] = given

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """With `test`/`predict`/`validate --ckpt_path`, the checkpoint supplies the defaults of the model
        and of its windowing, so no `--config` is needed to score the model the training run built
        (LightningCLI then applies the checkpoint's model hyperparameters over the config as usual)."""
        raw = list(args) if isinstance(args, (list, tuple)) else (sys.argv[1:] if args is None else [])
        if raw and raw[0] in ("test", "predict", "validate"):
            defaults = checkpoint_defaults(raw)
            if defaults:
                self._subcommand_parsers[raw[0]].set_defaults(defaults)
        super().parse_arguments(parser, args)
        # Remember the backbone this job was given before a resume can replace it (see
        # `_keep_given_paths_on_resume`).
        subcommand = self.config.get("subcommand")
        self._given_paths = (
            {key: self.config.get(f"{subcommand}.{key}") for key in ("model.backbone", "data.tokenizer")}
            if subcommand
            else {}
        )

    def _parse_ckpt_path(self) -> None:
        """Check `--ckpt_path` (missing, empty, truncated, unsafe) before LightningCLI loads it for its hparams."""
        subcommand = self.config.get("subcommand")
        check_resume_checkpoint(self.config[subcommand].get("ckpt_path") if subcommand else None)
        super()._parse_ckpt_path()

    def after_instantiate_classes(self) -> None:
        """When resuming (`--ckpt_path`), the restored state wins: `--model.init_checkpoint` is not read.

        LightningCLI also copies the resumed checkpoint's hyperparameters (including the
        init_checkpoint it was started from, which may live on another machine) into the config.
        """
        config = self.config.get(self.subcommand) if self.subcommand else None
        if config and config.get("ckpt_path") and isinstance(self.model, TokenClassifier):
            self.model.supersede_init_checkpoint()

    def config_files(self) -> list[str]:
        """Paths of the `--config` files this command line read, in order."""
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        files = (config or {}).get("config") or []
        return [os.fspath(path.absolute if hasattr(path, "absolute") else path) for path in files]

    def _log_provenance(self) -> None:
        for logger in self.trainer.loggers:
            if isinstance(logger, EnvMLFlowLogger):
                logger.log_provenance(self.config_files())
            logger.log_hyperparams({"threads": self.threads, "cores_available": self.cores.count})

    def after_fit(self) -> None:
        """Score the test split with the best checkpoint, when there is one and `--test_after_fit` is on."""
        if not self._subcommand_config().get("test_after_fit", True):
            return
        dataset = getattr(self.datamodule, "dataset", None)
        if dataset is None or not dataset.splits.get(TEST_SPLIT):
            rank_zero_info("the dataset has no test split: no test scores")
            return
        callback = self.trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") if callback else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
        self._log_test_table()

    def after_test(self) -> None:
        self._log_test_table()

    def _log_test_table(self) -> None:
        scores = self.model.last_scores.get("test") if isinstance(self.model, TokenClassifier) else None
        if scores is None:
            return
        for logger in self.trainer.loggers:
            if isinstance(logger, EnvMLFlowLogger):
                logger.log_entity_table(scores, TEST_TABLE_FILE)

    def before_fit(self) -> None:
        self._log_provenance()

    def before_validate(self) -> None:
        self._log_provenance()

    def before_test(self) -> None:
        self._log_provenance()

    def before_predict(self) -> None:
        self._log_provenance()


def cli_main(args: list[str] | None = None, run: bool = True) -> NerLightningCLI:
    """Run (or with `run=False` only parse and instantiate) the training command line.

    Args:
        args: Command-line arguments without the program name (default: `sys.argv[1:]`). With
            `run=True` the first one is the subcommand (`fit`, `validate`, `test`, `predict`).
        run: Run the subcommand; False parses the config and builds the model, data and trainer only.

    Returns:
        The CLI object (`.model`, `.datamodule`, `.trainer`, `.config`).
    """
    quiet_third_party_logs()
    return NerLightningCLI(
        TokenClassifier,
        NerDataModule,
        parser_class=NerArgumentParser,
        save_config_callback=SaveConfigToOutputDir,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=42,
        args=args,
        run=run,
    )


@error_boundary("ner-train")
def main(argv: list[str]) -> int:
    """Console-script entry point (`ner-train`, `python -m ner_lightning`); returns the exit status.

    The `--config` files are parsed first (a YAML error names the file and line), and errors are
    answered by the shared boundary (`ner_lightning.console`): a known error prints its message
    without a traceback and exits 2; `--debug` shows the traceback.
    """
    check_config_files(argv)
    # LightningCLI warns when given arguments while sys.argv has some; the boundary keeps them equal.
    cli_main(None if argv == sys.argv[1:] else argv)
    return 0


def default_tracking_store(config: Any) -> None:
    """Point an `EnvMLFlowLogger` without a store at `<output_dir>/mlruns.db` (not the working folder).

    Left alone when the environment names the store or the run (`MLFLOW_TRACKING_URI`, `MLFLOW_RUN_ID`)
    or the config sets `tracking_uri`.
    """
    if os.environ.get(ENV_MLFLOW_TRACKING_URI) or os.environ.get(ENV_MLFLOW_RUN_ID):
        return
    trainer = config.get("trainer") or {}
    loggers = trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        class_path = getattr(logger, "class_path", None) or (
            logger.get("class_path") if isinstance(logger, dict) else None
        )
        if class_path not in (
            f"{EnvMLFlowLogger.__module__}.{EnvMLFlowLogger.__qualname__}",
            "EnvMLFlowLogger",
        ):
            continue
        init_args = logger["init_args"]
        if init_args.get("tracking_uri"):
            continue
        folder = Path(config.get("output_dir") or DEFAULT_OUTPUT_DIR).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        init_args["tracking_uri"] = f"sqlite:///{folder / DEFAULT_STORE_FILE}"
        if not init_args.get("artifact_location"):
            init_args["artifact_location"] = (folder / DEFAULT_ARTIFACT_DIR).as_uri()


def checkpoint_defaults(args: list[str]) -> dict[str, Any]:
    """`{"model.<arg>": value, "data.<setting>": value}` from the checkpoint `--ckpt_path` names, if any.

    Args:
        args: The subcommand's command line (`test --ckpt_path best.ckpt ...`).
    """
    path = None
    for index, arg in enumerate(args):
        if arg == "--ckpt_path" and index + 1 < len(args):
            path = args[index + 1]
        elif arg.startswith("--ckpt_path="):
            path = arg.split("=", 1)[1]
    if not path or not Path(path).is_file():
        return {}
    try:
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # Lightning reports an unreadable checkpoint itself, with its path
        return {}
    model = {
        f"model.{key}": value
        for key, value in (checkpoint.get("hyper_parameters") or {}).items()
        if not key.startswith("_") and key != "label_names"  # labels come from the data (and are checked)
    }
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    return {**model, **{f"data.{key}": data[key] for key in MODEL_DATA_SETTINGS if key in data}}
