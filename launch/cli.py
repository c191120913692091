"""`ner-pipeline`: run the Phase 1 pipeline, or one of its steps, from a terminal.

    ner-pipeline run --config configs/pipeline/smoke.yaml [--backend local|azure] [--until STEP] [--force STEP]
    ner-pipeline run --config configs/pipeline/azure.yaml --cpu   (the GPU preset on the local emulator)
    ner-pipeline <step> --config ...   (runs every step up to STEP, reusing completed ones)
    ner-pipeline summary --config ...  (prints the last summary)

Errors print one message (file, line, field, fix) and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from launch.errors import LaunchError
from launch.pipeline_config import load_pipeline_config
from launch.pipeline_run import run_pipeline
from launch.pipeline_state import STEPS, state_dir_for
from ner_lightning.console import check_terminated, interrupt_on_sigterm
from ner_lightning.errors import NerLightningError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ner-pipeline",
        description="Phase 1: dry run, sweep, selection, final training, conversion, registration.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", required=True, help="pipeline config, e.g. configs/pipeline/smoke.yaml")
        sub.add_argument(
            "--backend", choices=("local", "azure"), default="local", help="where jobs run (default local)"
        )
        sub.add_argument("--workspace", default=None, help="local workspace folder (overrides the config)")
        sub.add_argument(
            "--force",
            action="append",
            default=[],
            choices=STEPS,
            help="recompute STEP even if unchanged (repeatable)",
        )
        sub.add_argument(
            "--cpu",
            action="store_true",
            help="swap the config's GPU overlay for its CPU one (training.accelerator), e.g. on the emulator",
        )
        return sub

    run = add("run", "run the whole pipeline (or up to --until)")
    run.add_argument("--until", choices=STEPS, default=None, help="stop after this step")
    for step in STEPS:
        add(step, f"run the pipeline up to the {step} step (completed steps are reused)")
    summary = commands.add_parser("summary", help="print the last summary of a pipeline")
    summary.add_argument("--config", required=True)
    summary.add_argument("--workspace", default=None)
    return parser


def _announce(line: str) -> None:
    """Print a progress line; a step line (`[k/9] ...`) first honours a SIGTERM whose interrupt was
    dropped (raised inside a garbage-collector callback), so the run still stops at the next step."""
    if line.startswith("["):
        check_terminated()
    print(line)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ner-pipeline` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: jobs are canceled and the state file keeps what was submitted.
    restore = interrupt_on_sigterm()
    try:
        if args.command == "summary":
            config = load_pipeline_config(args.config)
            if args.workspace is not None:
                config = replace(config, workspace=Path(args.workspace))
            folder = state_dir_for(config)
            path = folder / f"{config.name}_summary.txt"
            if not path.is_file():
                raise LaunchError(
                    "no summary yet", path=path, fix="run `ner-pipeline run --config ...` first"
                )
            print(path.read_text(encoding="utf-8"), end="")
            return 0
        until = args.until if args.command == "run" else args.command
        run_pipeline(
            args.config,
            backend=args.backend,
            until=until,
            force=tuple(args.force),
            workspace=args.workspace,
            cpu=args.cpu,
            announce=_announce,
        )
    except NerLightningError as error:
        print(f"ner-pipeline: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        config = _config_or_none(args)
        where = f" (state: {state_dir_for(config)})" if config is not None else ""
        print(
            f"ner-pipeline: interrupted ({str(interrupt) or 'SIGINT'}). Run the same command again to resume{where}: "
            "completed steps are reused, a job still running on Azure ML is re-attached, an interrupted "
            "final training resumes from its last checkpoint.",
            file=sys.stderr,
        )
        return 130
    finally:
        restore()
    return 0


def _config_or_none(args: argparse.Namespace) -> Any:
    try:
        config = load_pipeline_config(args.config)
    except NerLightningError:
        return None
    return replace(config, workspace=Path(args.workspace)) if args.workspace else config


if __name__ == "__main__":
    raise SystemExit(main())
