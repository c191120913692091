"""Command line of training jobs: `python -m ner_lightning fit|validate|test|predict --config ...`.

A `LightningCLI` over `TokenClassifier` and `NerDataModule`. Values known only at run time flow by
links, never written twice: `model.backbone` -> `data.tokenizer`, `data.label_names` ->
`model.label_names`, `output_dir` -> the checkpoint folder and the trainer's root folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from ner_lightning.callbacks import ToggleableEarlyStopping
from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    ONNX_DIR,
    PRIMARY_METRIC,
    PRIMARY_METRIC_GOAL,
)
from ner_lightning.data.datamodule import NerDataModule
from ner_lightning.model.module import TokenClassifier
from ner_lightning.onnx.callback import OnnxExport
from ner_lightning.tracking import EnvMLFlowLogger

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
        self.already_saved = trainer.strategy.broadcast(True)


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

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse, remembering the backbone this job was given before a resume can replace it."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        self._given_paths = (
            {key: self.config.get(f"{subcommand}.{key}") for key in ("model.backbone", "data.tokenizer")}
            if subcommand
            else {}
        )

    def before_instantiate_classes(self) -> None:
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
    return NerLightningCLI(
        TokenClassifier,
        NerDataModule,
        save_config_callback=SaveConfigToOutputDir,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=42,
        args=args,
        run=run,
    )


def main() -> None:
    """Console-script entry point (`ner-train`): like `cli_main()`, but returns None so the exit status is 0."""
    cli_main()
