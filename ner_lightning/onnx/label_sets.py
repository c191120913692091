"""Compare a model's labels with a dataset's, for the conversion smoke report.

`ner-convert --data <folder>` scores the model on that folder's held-out split. When the folder
was converted with other entity types than the model was trained on, the F1 numbers are about a
different task and entities of the missing types can never be found; the conversion still
succeeds (int8 vs fp32 is what it checks) but must say so. `ner-convert` calls
`label_set_warning` and puts the result into `smoke_report.json` under `warnings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ner_lightning.contract import OUTSIDE_TAG
from ner_lightning.tags import split_tag

#: Name of the warning in the smoke report.
WARNING_NAME: Final = "dataset_labels_differ"


def entity_types(labels: Sequence[str]) -> set[str]:
    """Entity types named by IOB2 labels (`B-PER`, `I-PER` -> `PER`); labels that are not IOB2 are kept whole."""
    types = set()
    for label in labels:
        if label == OUTSIDE_TAG:
            continue
        try:
            types.add(split_tag(label)[1])
        except ValueError:
            types.add(label)
    return types


def label_set_warning(
    model_labels: Sequence[str], dataset_labels: Sequence[str], *, dataset: str | None = None
) -> dict[str, Any] | None:
    """A smoke-report warning when the dataset's entity types differ from the model's, else None.

    Label order does not matter (tags are compared by name).

    Args:
        model_labels: The model's labels (checkpoint / `labels.json` of the model folder).
        dataset_labels: The dataset folder's labels.
        dataset: The dataset folder, for the message.

    Returns:
        `{"name", "message", "only_in_model", "only_in_dataset"}`, or None when the types agree.
    """
    model, data = entity_types(model_labels), entity_types(dataset_labels)
    if model == data:
        return None
    only_model, only_data = sorted(model - data), sorted(data - model)
    parts = []
    if only_data:
        parts.append(f"the model cannot predict {', '.join(only_data)} (never trained on them)")
    if only_model:
        parts.append(f"the dataset has no {', '.join(only_model)}")
    where = f" {dataset}" if dataset else ""
    return {
        "name": WARNING_NAME,
        "message": f"the dataset{where} has other entity types than the model: {'; '.join(parts)}; "
        "held-out F1 is measured on a different label set (pass the dataset the model was trained on)",
        "only_in_model": only_model,
        "only_in_dataset": only_data,
    }
