"""Console scripts: each checks that the extra its command needs is installed, then runs the command.

The base install is the serving set (numpy, onnxruntime, tokenizers), where `ner-predict` and
`ner-data` run. A command that needs more says which extra and how to install it, instead of an
ImportError traceback from deep inside an import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

#: Modules whose presence shows an extra is installed (a test checks they belong to that extra).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": ("torch", "lightning", "transformers", "torchcrf", "onnx", "mlflow", "yaml", "filelock"),
    "azure": ("azure.ai.ml", "azure.identity", "mlflow", "yaml", "filelock"),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here (found without importing them)."""
    missing = []
    for module in EXTRA_MODULES[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its parent package (e.g. `azure`) is absent
            found = False
        if not found:
            missing.append(module)
    return missing


def run_with_extra(command: str, target: str, extras: tuple[str, ...]) -> Any:
    """Run `target` (`module:function`) when one of `extras` is fully installed, else explain and return 2.

    Args:
        command: The console script's name, for the message.
        target: The command's entry function, imported only once its extra is known to be there.
        extras: Extras any one of which is enough (e.g. the pipeline runs with `train` or `azure`).
    """
    missing = {extra: missing_modules(extra) for extra in extras}
    if all(missing.values()):
        needs = " or ".join(f"the `{extra}` extra ({', '.join(missing[extra])} missing)" for extra in extras)
        install = " or ".join(f"pip install 'ner-lightning[{extra}]'" for extra in extras)
        print(f"{command}: needs {needs}. Fix: {install} (`make install` in a checkout).", file=sys.stderr)
        return 2
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)()


def train() -> Any:
    """`ner-train`: training with LightningCLI (`train` extra)."""
    return run_with_extra("ner-train", "ner_lightning.cli:main", ("train",))


def convert() -> Any:
    """`ner-convert`: ONNX export, int8 quantization and smoke test (`train` extra)."""
    return run_with_extra("ner-convert", "ner_lightning.onnx.convert:main", ("train",))
