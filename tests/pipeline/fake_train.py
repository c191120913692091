"""A stand-in training job for the emulator tests: logs `val_f1` to the run the environment names.

Usage: python fake_train.py --out DIR [--score F] [--epochs N] [--sleep S] [--fail MESSAGE]
The score of epoch e is `score * (e + 1) / epochs`, so the last epoch reports `score`. Writes
`result.txt` and `env.json` (the Azure ML variables it saw, and its working directory) into DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--score", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--fail", default="")
    args = parser.parse_args()
    if args.fail:
        print(f"ERROR: {args.fail}", file=sys.stderr)
        return 3
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run_id = os.environ["MLFLOW_RUN_ID"]
    for epoch in range(args.epochs):
        time.sleep(args.sleep)
        client.log_metric(run_id, "val_f1", args.score * (epoch + 1) / args.epochs, step=epoch)
    Path(args.out, "result.txt").write_text(f"{args.score}\n", encoding="utf-8")
    seen = {k: v for k, v in os.environ.items() if k.startswith(("AZURE", "MLFLOW", "EXTRA"))}
    Path(args.out, "env.json").write_text(json.dumps({"cwd": os.getcwd(), "env": seen}), encoding="utf-8")
    print(f"done score={args.score} env={os.environ.get('EXTRA_VAR', '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
