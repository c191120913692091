"""Accuracy-aware quantization: try int8 recipes in order of expected cost, keep the cheapest good one.

Two bars. The gate (`ner_lightning.onnx.gate`) is the hard one: a candidate whose F1 drop is
significantly above the tolerance is rejected. The target is what the search aims at: a
point-estimate drop of at most `target_drop` (default half a point). Candidates, in order:
1. Whole-graph dynamic recipes of the target ISA's preset (`preset_recipes`), cheapest first:
   on a VNNI/AMX/arm64 target `dynamic-pc-unfused` (per-channel weights, full 8-bit range, the
   exported graph as it is: onnxruntime fuses it when it loads), then `dynamic-pc` and
   `dynamic-pc-rr` (7-bit weights, `reduce_range`) on the graph the transformer optimiser fused
   offline; on an AVX2 or AVX-512 target without VNNI, where full-range weights saturate int16
   sums, only the `reduce_range` ones (the spirit of optimum's
   `AutoQuantizationConfig.avx2/avx512/avx512_vnni/arm64` presets). Quantizing the unfused graph
   ran 1.2 times as fast as quantizing the offline-fused one on the Xeon of docs/benchmarks.md;
   every one is judged and timed. Each scales the window's first token down where it would set the
   int8 step of every other token (`first_token="scaled"`, exact in fp32, about free:
   `ner_lightning.onnx.first_token`).
2. Only when none meets the target: the most accurate of them with the first token's row
   quantized on its own scale (`+first-split`, about 5 % slower; tier `first-token`).
3. Still none: mixed precision. The nodes of the most accurate candidate so far are ranked by their own int8 output error on training-split calibration batches
   (`ner_lightning.onnx.sensitivity`), and the top 1, 2, 4, 8 nodes (at most half of them) are
   kept in fp32, step by step, until one meets the target (more fp32 nodes are slower).
4. Still none: static QDQ quantization calibrated on the same training batches (min/max ranges).
   It comes last: onnxruntime runs QDQ transformers no faster than dynamic int8 on CPU and its
   fixed activation scales clip the outliers of transformer activations.
Choice, from the gate's figures alone (`choose`): among the candidates that meet the target, the one
of the lowest cost rank (the whole-graph recipes in preset order, the first-token split, then 1, 2,
4, 8 fp32 nodes, then static QDQ); when none meets it, the candidate the gate passed with the smallest drop (the cost
rank, then the order, breaking ties); when the gate passed none, `search` raises `NoRecipePassed` with the candidates table. Measured speed does not
decide: on one machine the F1 figures repeat exactly while timings do not, and the choice must
repeat so that a rerun (or a resumed pipeline) converts the same graph. Each candidate is still
timed (the best CPU time of a few runs of one fixed batch of calibration windows, one thread): the
timings go to the smoke report and the conversion log, not into the model's record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ner_lightning.errors import ExportError
from ner_lightning.onnx.cpu_isa import VNNI_TARGETS
from ner_lightning.onnx.gate import GateResult
from ner_lightning.onnx.quantize import QuantizeOptions, quantize_model

#: Cost rank of the static QDQ tier (after every mixed-precision step).
STATIC_COST_RANK = 1000
#: Cost rank of mixed precision with no node in fp32 (its fp32 node count is added).
MIXED_COST_RANK = 100
#: Cost rank of the first-token split (after every whole-graph recipe, before mixed precision).
FIRST_TOKEN_COST_RANK = 50
#: Largest point-estimate F1 drop the search aims at (absolute; 0.005 = half a point).
DEFAULT_TARGET_DROP = 0.005
#: Nodes kept in fp32 at the successive mixed-precision steps (capped at half the quantized nodes).
FP32_STEPS: tuple[int, ...] = (1, 2, 4, 8)


@dataclass(frozen=True)
class Recipe:
    """A named way to build the int8 graph.

    Args:
        name: Short name (`dynamic-pc-rr`, `dynamic-pc-rr+fp32x2`, `static-pc`, ...).
        options: Quantization options (method, per-channel, reduce-range, fp32 nodes, ...).
    """

    name: str
    options: QuantizeOptions

    def build(self, source: Path, target: Path, calibration: Sequence[Mapping[str, np.ndarray]] = ()) -> None:
        """Write the int8 graph of `source` to `target`."""
        quantize_model(source, target, self.options, calibration)

    def with_fp32_nodes(self, nodes: Sequence[str]) -> Recipe:
        """The same recipe with `nodes` kept in fp32 (named `<name>+fp32x<count>`)."""
        options = replace(
            self.options, exclude_nodes=tuple(dict.fromkeys([*self.options.exclude_nodes, *nodes]))
        )
        return replace(self, name=f"{self.name}+fp32x{len(nodes)}", options=options)

    def with_first_token_split(self) -> Recipe:
        """The same recipe with the first token's row quantized on its own scale (`<name>+first-split`)."""
        return replace(
            self, name=f"{self.name}+first-split", options=replace(self.options, first_token="split")
        )

    def to_json(self) -> dict[str, Any]:
        """`{"recipe": name, **options}` as recorded in `ner_model.json`."""
        return {"recipe": self.name, **self.options.to_json()}


def named_recipes() -> dict[str, Recipe]:
    """Every recipe `--recipes` can name."""
    recipes = [
        Recipe("dynamic-pc", QuantizeOptions(per_channel=True, reduce_range=False)),
        Recipe("dynamic-pc-rr", QuantizeOptions(per_channel=True, reduce_range=True)),
        Recipe("dynamic-pt", QuantizeOptions(per_channel=False, reduce_range=False)),
        Recipe("dynamic-pt-rr", QuantizeOptions(per_channel=False, reduce_range=True)),
        Recipe("dynamic-pc-unfused", QuantizeOptions(optimize=False, per_channel=True, reduce_range=False)),
        Recipe("dynamic-pc-rr-unfused", QuantizeOptions(optimize=False, per_channel=True, reduce_range=True)),
        # Static QDQ needs ONNX shape inference, which the fused contrib ops defeat: unfused graph.
        Recipe(
            "static-pc",
            QuantizeOptions(optimize=False, per_channel=True, reduce_range=False, method="static"),
        ),
        Recipe(
            "static-pc-rr",
            QuantizeOptions(optimize=False, per_channel=True, reduce_range=True, method="static"),
        ),
    ]
    return {recipe.name: recipe for recipe in recipes}


def preset_recipes(target: str) -> list[Recipe]:
    """Tier-1 recipes of a target ISA (see the module docstring)."""
    recipes = named_recipes()
    if target in VNNI_TARGETS:
        return [recipes["dynamic-pc-unfused"], recipes["dynamic-pc"], recipes["dynamic-pc-rr"]]
    return [recipes["dynamic-pc-rr-unfused"], recipes["dynamic-pc-rr"]]


def static_recipe(target: str) -> Recipe:
    """The calibrated static QDQ fallback of a target ISA."""
    return named_recipes()["static-pc" if target in VNNI_TARGETS else "static-pc-rr"]


def parse_recipes(names: str) -> list[Recipe]:
    """Recipes of a comma-separated `--recipes` value.

    Raises:
        ExportError: A name is unknown.
    """
    known = named_recipes()
    chosen = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        if name not in known:
            raise ExportError(
                f"unknown recipe {name!r}", field="--recipes", fix=f"use names from: {', '.join(known)}"
            )
        chosen.append(known[name])
    return chosen


@dataclass
class Candidate:
    """One tried recipe: its gate figures and speed (a row of the candidates table)."""

    recipe: Recipe
    tier: str
    #: Position in the whole-graph preset (its order is the expected cost); unused by other tiers.
    position: int = 0
    gate: GateResult | None = None
    ms_per_batch: float | None = None
    error: str = ""
    chosen: bool = False
    target_met: bool = False
    path: Path | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        """Whether the candidate built and passed the gate."""
        return self.gate is not None and self.gate.passed and not self.error

    @property
    def cost_rank(self) -> int:
        """Expected cost: the preset position of a whole-graph recipe, then mixed precision by its
        fp32 node count, static last."""
        if self.tier == "static":
            return STATIC_COST_RANK
        if self.tier == "mixed":
            return MIXED_COST_RANK + len(self.recipe.options.exclude_nodes)
        if self.tier == "first-token":
            return FIRST_TOKEN_COST_RANK
        return self.position

    def timing(self, fp32_ms: float | None) -> dict[str, Any]:
        """The candidate's measured speed (a run record: the smoke report, never `ner_model.json`)."""
        return {
            "recipe": self.recipe.name,
            "ms_per_batch": round(self.ms_per_batch, 2) if self.ms_per_batch else None,
            "speedup_vs_fp32": round(fp32_ms / self.ms_per_batch, 2)
            if fp32_ms and self.ms_per_batch
            else None,
        }

    def row(self) -> dict[str, Any]:
        """The table row recorded in `ner_model.json` and `smoke_report.json` (no timings: it repeats)."""
        gate = self.gate
        return {
            "recipe": self.recipe.name,
            "tier": self.tier,
            "method": self.recipe.options.method,
            "per_channel": self.recipe.options.per_channel,
            "reduce_range": self.recipe.options.reduce_range,
            "fused": self.recipe.options.optimize,
            "first_token": self.recipe.options.first_token,
            "fp32_nodes": len(self.recipe.options.exclude_nodes),
            "verdict": (
                gate.verdict
                if gate.verdict != "too_small"
                else f"too_small:{'pass' if gate.passed else 'fail'}"
            )
            if gate
            else "error",
            "int8_f1": round(gate.int8_f1, 4) if gate else None,
            "drop": round(gate.drop, 4) if gate else None,
            "ci_low": round(gate.ci_low, 4) if gate else None,
            "ci_high": round(gate.ci_high, 4) if gate else None,
            "word_tag_agreement": round(gate.word_tag_agreement, 4) if gate else None,
            "target_met": self.target_met,
            "chosen": self.chosen,
            "error": self.error,
        }


def format_table(rows: Sequence[Mapping[str, Any]], timings: Sequence[Mapping[str, Any]] = ()) -> str:
    """The candidates table as aligned text (the `ner-convert` log and failure message).

    Args:
        rows: `Candidate.row()` of each candidate.
        timings: `Candidate.timing()` of each candidate, in the same order (empty: no speed columns).
    """
    header = (
        "recipe",
        "tier",
        "fp32 nodes",
        "int8 F1",
        "drop",
        "CI",
        "agree",
        "ms/batch",
        "x fp32",
        "verdict",
        "target",
    )
    lines = [header]
    speeds = list(timings) or [{} for _ in rows]
    for row, speed in zip(rows, speeds, strict=True):
        ci = f"{row['ci_low']:+.4f}..{row['ci_high']:+.4f}" if row["ci_low"] is not None else "-"
        lines.append(
            (
                ("* " if row["chosen"] else "") + row["recipe"],
                row["tier"],
                str(row["fp32_nodes"]),
                f"{row['int8_f1']:.4f}" if row["int8_f1"] is not None else "-",
                f"{row['drop']:+.4f}" if row["drop"] is not None else "-",
                ci,
                f"{row['word_tag_agreement']:.2%}" if row["word_tag_agreement"] is not None else "-",
                f"{speed['ms_per_batch']:.1f}" if speed.get("ms_per_batch") else "-",
                f"{speed['speedup_vs_fp32']:.2f}" if speed.get("speedup_vs_fp32") else "-",
                row["verdict"] + (f" ({row['error']})" if row["error"] else ""),
                "met" if row["target_met"] else "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines
    )


class NoRecipePassed(ExportError):
    """Every candidate recipe failed the gate (the message holds the candidates table)."""

    def __init__(self, message: str, candidates: list[Candidate], fp32_ms: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.candidates = candidates
        self.fp32_ms = fp32_ms
        self.rows = [candidate.row() for candidate in candidates]
        self.timings = [candidate.timing(fp32_ms) for candidate in candidates]


def time_graph(path: Path, feeds: Mapping[str, np.ndarray], repeats: int = 5) -> float:
    """Best CPU time in ms of `repeats` runs of one batch on one thread (after one warm-up run).

    CPU time of the process, not wall time: on a shared machine other processes stretch the wall
    clock of a run, not the work it does, and the candidates are compared by their work.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = {name: feeds[name] for name in names}
    session.run(None, feed)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        session.run(None, feed)
        best = min(best, time.process_time() - start)
    return best * 1000.0


@dataclass
class SearchResult:
    """The outcome of `search`: the chosen candidate, every tried one, and the fp32 timing."""

    chosen: Candidate
    candidates: list[Candidate]
    fp32_ms: float
    ranking: list[dict[str, Any]]

    def rows(self) -> list[dict[str, Any]]:
        """The candidates table."""
        return [candidate.row() for candidate in self.candidates]

    def timings(self) -> list[dict[str, Any]]:
        """The measured speed of each candidate, in the table's order."""
        return [candidate.timing(self.fp32_ms) for candidate in self.candidates]


def search(
    tier1: Sequence[Recipe],
    *,
    graph_for: Callable[[Recipe], Path],
    evaluate: Callable[[Path], GateResult],
    workdir: Path,
    calibration: Sequence[Mapping[str, np.ndarray]],
    fp32_graph: Path,
    static: Recipe | None = None,
    fallback: bool = True,
    target_drop: float = DEFAULT_TARGET_DROP,
    announce: Callable[[str], None] = print,
) -> SearchResult:
    """Try the candidates (see the module docstring) and return the cheapest that meets the target.

    Args:
        tier1: Whole-graph recipes, all judged and timed.
        graph_for: The fp32 graph a recipe quantizes (fused or not, per its options).
        evaluate: Gate of an int8 graph file on the held-out sentences.
        workdir: Scratch folder for the candidate graphs.
        calibration: Training-split batches (sensitivity ranking, static calibration, timing batch).
        fp32_graph: The fp32 graph, timed as the speed reference.
        static: The static QDQ fallback (None: none).
        fallback: Try mixed precision and static recipes when no tier-1 recipe meets the target.
        target_drop: Largest point-estimate F1 drop a candidate aims at (0.005 = half a point).
        announce: Progress lines.

    Raises:
        NoRecipePassed: No candidate passed the gate.
    """
    timing_feeds = calibration[0]
    fp32_ms = time_graph(fp32_graph, timing_feeds)
    candidates: list[Candidate] = []
    ranking: list[dict[str, Any]] = []

    def meets(candidate: Candidate) -> bool:
        return candidate.passed and candidate.gate.drop <= target_drop + 1e-12  # type: ignore[union-attr]

    def attempt(recipe: Recipe, tier: str, position: int = 0) -> Candidate:
        candidate = Candidate(recipe, tier, position, path=workdir / f"candidate-{len(candidates)}.onnx")
        candidates.append(candidate)
        try:
            recipe.build(graph_for(recipe), candidate.path, calibration)
            candidate.gate = evaluate(candidate.path)
            candidate.ms_per_batch = time_graph(candidate.path, timing_feeds)
        except ExportError as error:
            candidate.error = str(error).splitlines()[0][:200]
        candidate.target_met = meets(candidate)
        announce(
            f"  candidate {recipe.name}: "
            + (candidate.gate.message() if candidate.gate else f"error: {candidate.error}")
            + (
                f"; {candidate.ms_per_batch:.1f} ms/batch (fp32 {fp32_ms:.1f})"
                if candidate.ms_per_batch
                else ""
            )
        )
        return candidate

    for position, recipe in enumerate(tier1):
        attempt(recipe, "whole-graph", position)
    if fallback and not any(c.target_met for c in candidates):
        built = [c for c in candidates if c.gate is not None]
        if built:
            base = min(built, key=lambda c: c.gate.drop).recipe  # type: ignore[union-attr]
            if base.options.method == "dynamic" and base.options.first_token != "split":
                attempt(base.with_first_token_split(), "first-token")
        built = [c for c in candidates if c.gate is not None]
        if built and not any(c.target_met for c in candidates):
            base = min(built, key=lambda c: c.gate.drop).recipe  # type: ignore[union-attr]
            _mixed_precision(base, graph_for, calibration, attempt, ranking)
        if static is not None and not any(c.target_met for c in candidates):
            attempt(static, "static")
    passed = [c for c in candidates if c.passed]
    if not passed:
        rows = [candidate.row() for candidate in candidates]
        timings = [candidate.timing(fp32_ms) for candidate in candidates]
        raise NoRecipePassed(
            f"no int8 recipe passed the gate ({len(rows)} tried):\n{format_table(rows, timings)}",
            candidates,
            fp32_ms,
            fix="raise --f1-tolerance, add recipes with --recipes, or keep the fp32 model",
        )
    chosen = choose(candidates)
    if not chosen.target_met:
        announce(
            f"  no candidate reached the target drop {target_drop:g}; keeping the most accurate that "
            "passed the gate"
        )
    chosen.chosen = True
    return SearchResult(chosen, candidates, fp32_ms, ranking)


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """The candidate to keep, from the gate's figures alone (see the module docstring).

    Raises:
        ValueError: No candidate passed the gate.
    """
    passed = [c for c in candidates if c.passed]
    if not passed:
        raise ValueError("no candidate passed the gate")
    order = {id(c): i for i, c in enumerate(candidates)}
    # Drops rounded as in the table: a difference in the 12th digit is not a difference in accuracy.
    met = [c for c in passed if c.target_met]
    if met:
        return min(met, key=lambda c: (c.cost_rank, round(c.gate.drop, 6), order[id(c)]))  # type: ignore[union-attr]
    return min(passed, key=lambda c: (round(c.gate.drop, 6), c.cost_rank, order[id(c)]))  # type: ignore[union-attr]


def _mixed_precision(
    base: Recipe,
    graph_for: Callable[[Recipe], Path],
    calibration: Sequence[Mapping[str, np.ndarray]],
    attempt: Callable[[Recipe, str], Candidate],
    ranking: list[dict[str, Any]],
) -> None:
    """Keep the base recipe's most sensitive nodes in fp32, 1, 2, 4, 8 at a time, until one meets the target."""
    from ner_lightning.onnx.sensitivity import rank_nodes

    try:
        ranked = rank_nodes(graph_for(base), base, calibration)
    except ExportError:
        return
    ranking.extend(asdict(node) for node in ranked)
    for count in FP32_STEPS:
        if count > max(1, len(ranked) // 2):
            break
        if attempt(base.with_fp32_nodes([node.name for node in ranked[:count]]), "mixed").target_met:
            return
