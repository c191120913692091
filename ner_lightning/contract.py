"""Names shared by the training package and the launcher, each defined once.

The training code (`ner_lightning`) and the orchestration code (`launch`) meet only through
command lines, config files, the dataset folder layout and MLflow metric names. Every such
name lives here. This module must stay import-light: no torch, lightning or transformers,
because the launcher imports it.
"""

from __future__ import annotations

from typing import Final

# --- Metrics -------------------------------------------------------------------------------
#: The validation metric logged once per epoch by the training code and optimised by sweeps.
PRIMARY_METRIC: Final = "val_f1"
#: Direction in which PRIMARY_METRIC improves.
PRIMARY_METRIC_GOAL: Final = "maximize"
#: Other metric names logged by the training code.
VAL_PRECISION: Final = "val_precision"
VAL_RECALL: Final = "val_recall"
TEST_F1: Final = "test_f1"
TRAIN_LOSS: Final = "train_loss"
#: MLflow table artifact of a training run: per-entity-type precision/recall/F1/support on the test split.
TEST_ENTITY_TABLE: Final = "test_entity_scores.json"
#: Logged by the conversion job: entity F1 of the fp32 and int8 ONNX models on the held-out sample.
HELDOUT_F1_FP32: Final = "heldout_f1_fp32"
HELDOUT_F1_INT8: Final = "heldout_f1_int8"
INT8_SIZE_MB: Final = "int8_size_mb"
#: Logged by the conversion job: the int8 gate's figures over every held-out sentence (F1 drop
#: fp32 - int8 with its paired bootstrap interval, what was judged) and the chosen graph's speed-up.
INT8_F1_DROP: Final = "int8_f1_drop"
INT8_F1_DROP_CI_LOW: Final = "int8_f1_drop_ci_low"
INT8_F1_DROP_CI_HIGH: Final = "int8_f1_drop_ci_high"
HELDOUT_SENTENCES: Final = "heldout_sentences"
HELDOUT_GOLD_ENTITIES: Final = "heldout_gold_entities"
INT8_WORD_AGREEMENT: Final = "int8_word_tag_agreement"
INT8_SPEEDUP: Final = "int8_speedup_vs_fp32"
#: MLflow params of the conversion run (strings): the chosen recipe, the nodes it keeps in fp32
#: (comma-separated, `none`), how it treats the window's first token (`scaled`, `split`, `shared`),
#: the ISA it targets and the ISA level it was validated on.
INT8_RECIPE: Final = "int8_recipe"
INT8_FP32_NODES: Final = "int8_fp32_nodes"
INT8_FIRST_TOKEN: Final = "int8_first_token"
INT8_TARGET_ISA: Final = "int8_target_isa"
INT8_VALIDATED_ON: Final = "int8_validated_on"
#: What the pipeline copies from the conversion run into its summary and the registered model's tags.
CONVERSION_GATE_METRICS: Final = (
    HELDOUT_F1_FP32,
    HELDOUT_F1_INT8,
    INT8_F1_DROP,
    INT8_F1_DROP_CI_LOW,
    INT8_F1_DROP_CI_HIGH,
    HELDOUT_SENTENCES,
    HELDOUT_GOLD_ENTITIES,
    INT8_WORD_AGREEMENT,
    INT8_SPEEDUP,
)
CONVERSION_RECIPE_PARAMS: Final = (
    INT8_RECIPE,
    INT8_FP32_NODES,
    INT8_FIRST_TOKEN,
    INT8_TARGET_ISA,
    INT8_VALIDATED_ON,
)

# --- Dataset folder layout (the `uri_folder` data asset) -------------------------------------
TRAIN_SPLIT: Final = "train"
VALIDATION_SPLIT: Final = "validation"
TEST_SPLIT: Final = "test"
#: Split name -> file name inside a dataset folder.
SPLIT_FILES: Final = {
    TRAIN_SPLIT: "train.jsonl",
    VALIDATION_SPLIT: "validation.jsonl",
    TEST_SPLIT: "test.jsonl",
}
REQUIRED_SPLITS: Final = (TRAIN_SPLIT, VALIDATION_SPLIT)
OPTIONAL_SPLITS: Final = (TEST_SPLIT,)
#: JSON field names of one example line.
TOKENS_FIELD: Final = "tokens"
TAGS_FIELD: Final = "ner_tags"
#: Ordered label list (JSON array of strings), optional in a dataset folder, required in a model folder.
LABELS_FILE: Final = "labels.json"
#: Dataset manifest written by `ner-data convert` (schema version, sha256 per file, fingerprint).
MANIFEST_FILE: Final = "manifest.json"
#: The label every non-entity word carries.
OUTSIDE_TAG: Final = "O"

# --- Training output folder layout ------------------------------------------------------------
CHECKPOINT_DIR: Final = "checkpoints"
BEST_CHECKPOINT: Final = "best.ckpt"
LAST_CHECKPOINT: Final = "last.ckpt"
#: The configuration a training run really ran with (JSON, next to its checkpoints).
EFFECTIVE_CONFIG_FILE: Final = "effective_config.json"
#: Sub-folder of a training output folder that the ONNX export callback writes.
ONNX_DIR: Final = "onnx"

# --- Model folder layout (ONNX export and the int8 conversion output) --------------------------
ONNX_MODEL_FILE: Final = "model.onnx"
MODEL_METADATA_FILE: Final = "ner_model.json"
SMOKE_REPORT_FILE: Final = "smoke_report.json"
#: Files of a model folder that record the run which produced it (job paths, timings), not the
#: model: left out of the registered model's `content_sha256`, which two conversions of the same
#: weights on the same kind of CPU therefore share.
MODEL_RUN_RECORD_FILES: Final = (SMOKE_REPORT_FILE,)

# --- Environment variables a job reads ------------------------------------------------------
#: Set by Azure ML inside a job and by the local backend: the run the training code attaches to.
ENV_MLFLOW_RUN_ID: Final = "MLFLOW_RUN_ID"
ENV_MLFLOW_TRACKING_URI: Final = "MLFLOW_TRACKING_URI"
ENV_MLFLOW_EXPERIMENT_NAME: Final = "MLFLOW_EXPERIMENT_NAME"
#: Git commit of the code a job runs (a code snapshot has no .git folder, so the launcher passes it).
ENV_GIT_COMMIT: Final = "NER_GIT_COMMIT"
#: JSON object {file name: sha256} of the configs the launcher passed to the job.
ENV_CONFIG_HASHES: Final = "NER_CONFIG_SHA256"
#: Content fingerprint of the dataset version a job reads (from its manifest).
ENV_DATASET_FINGERPRINT: Final = "NER_DATASET_FINGERPRINT"
#: The checkpoint a final-training job starts from (the plan's variable; also `--model.init_checkpoint`).
ENV_CHECKPOINT_PATH: Final = "CHECKPOINT_PATH"

# --- MLflow tags ------------------------------------------------------------------------------
TAG_STAGE: Final = "stage"
TAG_PRODUCTION_ELIGIBLE: Final = "production_eligible"
TAG_GIT_COMMIT: Final = "git_commit"
TAG_DATASET_NAME: Final = "dataset_name"
TAG_DATASET_VERSION: Final = "dataset_version"
TAG_DATASET_FINGERPRINT: Final = "dataset_fingerprint"
#: Prefix of one tag per config file: `config_sha256.<file name>`.
TAG_CONFIG_SHA256_PREFIX: Final = "config_sha256."

#: Stage values (tag `stage` on jobs and runs).
STAGE_DRY_RUN: Final = "dry_run"
STAGE_SWEEP: Final = "sweep"
STAGE_FINAL: Final = "final_training"
STAGE_CONVERSION: Final = "conversion"
STAGE_PROD: Final = "prod"

#: Prefix of package-resource paths (`pkg:<package>/<path inside it>`), resolved by resources.py.
PACKAGE_PATH_PREFIX: Final = "pkg:"
