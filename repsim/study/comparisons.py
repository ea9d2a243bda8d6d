"""From a study's results to its answer: per-seed measures and paired comparisons.

Per run (one seed of one dataset x protocol x fusion layer) the measures are: clean
accuracy; the normalised area under the accuracy-SNR curve (:func:`repsim.analysis.stats.
normalized_auc`) for audio, visual and both noise; the accuracy with each modality removed;
the readout's reliance index at the last step; and the decodability of the heard and the
seen digit on incongruent stimuli.

Runs with mechanism measures (see :mod:`repsim.study.summary`) add them: the noise entry at
the readout's input, what survives of the heard and the seen digit, and for gated runs the
gate's audio share, each at every audio SNR (``<measure>_snr<X>``, or ``_clean``), and the
noise entry of every layer (``noise_entry.<layer>_snr<X>``). Runs that recorded the fusion
operator's output (summary version 2) add its noise entry (``noise_entry_fused``) and, per
target (heard, seen) and view (``mean``: the spatial mean, ``map``: the full map), the
accuracy of a probe trained and tested within the noisy condition (``fused_present_...``:
is the information there?) and of one trained on clean stimuli (``fused_transfer_...``: does
a clean-trained reading still work?).

The primary family, per dataset and protocol (and fusion operator), is :data:`PRIMARY`
compared between fusion layer 1 and every other fusion layer, paired by seed
(:func:`repsim.analysis.stats.compare_paired`), Holm-corrected across the family. In a study
of several operators, :func:`operator_comparisons` adds a second family per dataset, protocol
and fusion layer: every operator against concatenation, Holm-corrected across it.

Each comparison also gets the two one-sided tests of equivalence (TOST,
:func:`repsim.analysis.stats.equivalence_test`) against the measure's margin (the smallest
difference that matters, :mod:`repsim.study.settings`); the TOST p-values are Holm-corrected
within the same family, separately from the difference test's. The verdict
(:func:`verdict`) is one of :data:`VERDICTS`: *better* or *worse* when the corrected
difference test rejects, else *equivalent* when the corrected TOST rejects (the 90 %
interval inside the margin, up to Holm's adjustment), else *inconclusive*: the data can tell
neither a difference nor its absence. The smallest detectable difference of each comparison
is computed at the Bonferroni level ALPHA / m of its family of m tests (the level Holm's
first step applies), so that "inconclusive, no difference above X detectable" never names an
X that the corrected test would not have let through. Cells with fewer than
:data:`MIN_SEEDS` paired seeds get no test.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from repsim.analysis.stats import compare_paired, equivalence_test, holm, normalized_auc, paired_t
from repsim.conditions import MODALITIES, NOISE_KINDS
from repsim.models.config import DEFAULT_FUSION_OP, FUSION_OPS
from repsim.study.settings import PRIMARY, Analysis

SECONDARY = (*(f"removed_{m}" for m in MODALITIES), "reliance_index", "probe_heard",
             "probe_seen")
MIN_SEEDS = 3
ALPHA = 0.05
KEYS = ["dataset", "protocol", "fusion_layer", "seed"]
OPERATOR = "fusion_op"  # the results column of a study with several fusion operators
# Mechanism measures: the noise entry (``noise_entry.<layer>`` per layer), the heard and the
# seen digit surviving noise (``survival_<heard|seen>``), the gate's audio share, and at the
# operator's output (``fused_<present|transfer>_<heard|seen>_<mean|map>``).
NOISE_ENTRY, SURVIVAL, GATE_AUDIO, FUSED = "noise_entry", "survival", "gate_audio", "fused"
NOISE_ENTRY_FUSED = f"{NOISE_ENTRY}_{FUSED}"
MECHANISM = (NOISE_ENTRY, SURVIVAL, GATE_AUDIO, FUSED)
BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"
VERDICTS = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE)


def run_keys(table: pd.DataFrame) -> list[str]:
    """:data:`KEYS`, with the operator before the fusion layer when ``table`` has one."""
    return KEYS[:2] + [OPERATOR] + KEYS[2:] if OPERATOR in table else list(KEYS)


def mechanism_name(measure: str, noise: str, snr_db: float) -> str:
    """A mechanism measure at one condition: ``<measure>_snr<X>`` or ``<measure>_clean``."""
    return f"{measure}_clean" if noise == "none" else f"{measure}_snr{snr_db:g}"


def per_seed_measures(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run and measure (:data:`PRIMARY` + :data:`SECONDARY`, and the mechanism
    measures of runs that have them): the run's keys, ``measure`` and ``value``."""
    rows = []
    keys = run_keys(results)
    for key, run in results.groupby(keys, sort=True):
        base = dict(zip(keys, key, strict=True))
        accuracy = run[run["measure"] == "accuracy"]
        clean = accuracy[(accuracy["noise"] == "none") & (accuracy["removed"] == "none")]
        rows.append({**base, "measure": "clean_accuracy", "value": float(clean["value"].iloc[0])})
        for kind in NOISE_KINDS:
            curve = accuracy[accuracy["noise"] == kind]
            rows.append({**base, "measure": f"auc_{kind}",
                         "value": normalized_auc(curve["snr_db"], curve["value"])})
        for modality in MODALITIES:
            removed = accuracy[accuracy["removed"] == modality]
            rows.append({**base, "measure": f"removed_{modality}",
                         "value": float(removed["value"].iloc[0])})
        for name in ("reliance_index", "probe_heard", "probe_seen"):
            value = run.loc[run["measure"] == name, "value"]
            rows.append({**base, "measure": name, "value": float(value.iloc[0])})
        mechanism = run[run["measure"].str.startswith(MECHANISM)]
        rows += [{**base, "measure": mechanism_name(str(r["measure"]), str(r["noise"]),
                                                    float(r["snr_db"])),
                  "value": float(r["value"])} for r in mechanism.to_dict("records")]
    return pd.DataFrame(rows, columns=[*keys, "measure", "value"])


def _order(values) -> list:
    """Fusion layers in numeric order, operators in :data:`FUSION_OPS` order."""
    return sorted(values, key=lambda v: FUSION_OPS.index(v) if isinstance(v, str) else v)


def comparisons(measures: pd.DataFrame, reference: int = 1,
                family: tuple[str, ...] = PRIMARY, n_boot: int = 10_000,
                analysis: Analysis | None = None, full: bool = True) -> pd.DataFrame:
    """Fusion layer ``reference`` against every other fusion layer, for each measure of
    ``family``, paired by seed, per dataset and protocol (and operator, in a study of
    several); Holm's correction within each such family. ``difference`` is reference minus
    other (positive: the reference is higher). ``analysis`` gives the equivalence margins
    (default: :data:`repsim.study.settings.DEFAULT_MARGINS`); ``full=False`` computes the
    tests and the verdict only (no bootstrap, no detectable difference)."""
    within = ["dataset", "protocol"] + ([OPERATOR] if OPERATOR in measures else [])
    return _compare(measures, within, "fusion_layer", reference, f"k={reference}", family,
                    n_boot, analysis or Analysis(), full)


def operator_comparisons(measures: pd.DataFrame, reference: str = DEFAULT_FUSION_OP,
                         family: tuple[str, ...] = PRIMARY, n_boot: int = 10_000,
                         analysis: Analysis | None = None, full: bool = True) -> pd.DataFrame:
    """Operator ``reference`` against every other operator at each fusion layer, paired by
    seed, per dataset, protocol and fusion layer; Holm's correction within each such family.
    ``difference`` is reference minus other; the rest as in :func:`comparisons`."""
    return _compare(measures, ["dataset", "protocol", "fusion_layer"], OPERATOR, reference,
                    reference, family, n_boot, analysis or Analysis(), full)


def _tests(reference: np.ndarray, other: np.ndarray, margin: float, n_boot: int,
           detection_alpha: float, full: bool) -> dict:
    """The columns of one tested comparison (see :func:`_compare`)."""
    differences = reference - other
    equivalence = equivalence_test(differences, margin, ALPHA)
    row = {"margin": margin, "tost_p": equivalence.p_value,
           "eq_low": equivalence.interval[0], "eq_high": equivalence.interval[1]}
    if not full:
        mean, interval, p = paired_t(differences)
        return {**row, "difference": mean, "t_low": interval[0], "t_high": interval[1],
                "t_p": p}
    result = compare_paired(reference, other, n_boot=n_boot, detection_alpha=detection_alpha)
    return {**row,
            "difference": result.mean_difference,
            "t_low": result.t_interval[0], "t_high": result.t_interval[1],
            "boot_low": result.bootstrap_interval[0],
            "boot_high": result.bootstrap_interval[1],
            "t_p": result.t_p_value, "sign_flip_p": result.sign_flip_p_value,
            "sign_flip_exact": result.sign_flip_exact,
            "smallest_p": result.smallest_sign_flip_p_value,
            "p_improvement": result.probability_of_improvement,
            "p_improvement_low": result.improvement_interval[0],
            "p_improvement_high": result.improvement_interval[1],
            "detectable": result.detectable_difference}


def _compare(measures: pd.DataFrame, within: list[str], factor: str, reference, label: str,
             family: tuple[str, ...], n_boot: int, analysis: Analysis,
             full: bool) -> pd.DataFrame:
    """``reference`` against every other level of ``factor`` in each group of ``within``
    (one Holm family each, for the difference tests and for the TOST p-values apart);
    ``label`` names the reference in verdicts."""
    rows = []
    for group, cell in measures.groupby(within, sort=False):
        others = _order(set(cell[factor]) - {reference})
        detection_alpha = ALPHA / max(1, len(family) * len(others))
        for measure in family:
            values = cell[cell["measure"] == measure].pivot(index="seed", columns=factor,
                                                            values="value")
            for k in others:
                base = {**dict(zip(within, group, strict=True)), "measure": measure,
                        "reference": reference, factor: k}
                if reference not in values or k not in values:
                    rows.append({**base, "n_seeds": 0})
                    continue
                paired = values[[reference, k]].dropna()
                row = {**base, "n_seeds": len(paired),
                       "reference_mean": float(paired[reference].mean()),
                       "other_mean": float(paired[k].mean())}
                if len(paired) >= MIN_SEEDS:
                    row.update(_tests(paired[reference].to_numpy(), paired[k].to_numpy(),
                                      analysis.margin(measure), n_boot, detection_alpha, full))
                rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for p, adjusted in (("t_p", "holm_p"), ("tost_p", "holm_tost_p")):
        table[adjusted] = np.nan
        for _, index in table.groupby(within, sort=False).groups.items():
            tested = [i for i in index if table[p].notna()[i]] if p in table else []
            if tested:
                table.loc[tested, adjusted] = holm(table.loc[tested, p].to_numpy())
    table["verdict"] = [verdict(row, label) for _, row in table.iterrows()]
    return table


def verdict(row: pd.Series, label: str = "k=1") -> str:
    """What a comparison says (module docstring): ``<label> better``, ``<label> worse``,
    ``equivalent``, ``inconclusive``, or ``not tested (<n> paired seeds)``."""
    p = row.get("holm_p", math.nan)
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return f"not tested ({int(row['n_seeds'])} paired seeds)"
    if p < ALPHA:
        return f"{label} {BETTER}" if row["difference"] > 0 else f"{label} {WORSE}"
    return EQUIVALENT if row["holm_tost_p"] < ALPHA else INCONCLUSIVE


def short_verdict(row: pd.Series) -> str:
    """A tested row's verdict as one of :data:`VERDICTS` (the reference's label dropped)."""
    return str(row["verdict"]).rsplit(" ", 1)[-1]


def is_equivalent(row: pd.Series) -> bool:
    """True when the corrected TOST of a tested row rejects (its difference may be
    significant too: a real difference smaller than the margin)."""
    p = row.get("holm_tost_p", math.nan)
    return bool(p is not None and not (isinstance(p, float) and math.isnan(p)) and p < ALPHA)


def without_runs(measures: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``measures`` without the runs of ``runs`` (rows with the run keys)."""
    keys = run_keys(measures)
    drop = pd.MultiIndex.from_frame(runs[keys])
    return measures[~pd.MultiIndex.from_frame(measures[keys]).isin(drop)]


def verdicts_without(table: pd.DataFrame, measures: pd.DataFrame, runs: pd.DataFrame,
                     compare: Callable[..., pd.DataFrame]) -> pd.Series:
    """The verdict of each row of ``table`` (made by ``compare(measures)``) when the runs of
    ``runs`` are left out (``compare`` called with ``full=False``), aligned with ``table``'s
    rows; NaN where a row has no counterpart."""
    again = compare(without_runs(measures, runs), full=False)
    keys = [column for column in table.columns
            if column in ("dataset", "protocol", OPERATOR, "fusion_layer", "measure")]
    merged = table[keys].merge(again[[*keys, "verdict"]], on=keys, how="left")
    return pd.Series(merged["verdict"].to_numpy(), index=table.index)
