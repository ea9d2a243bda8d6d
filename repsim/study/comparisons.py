"""From a study's results to its answer: per-seed measures and paired comparisons.

Per run (one seed of one dataset x protocol x fusion layer) the measures are: clean
accuracy; the normalised area under the accuracy-SNR curve (:func:`repsim.analysis.stats.
normalized_auc`) for audio, visual and both noise; the accuracy with each modality removed;
the readout's reliance index at the last step; and the decodability of the heard and the
seen digit on incongruent stimuli.

Runs with mechanism measures (see :mod:`repsim.study.summary`) add them: the noise entry at
the readout's input, what survives of the heard and the seen digit, and for gated runs the
gate's audio share, each at every audio SNR (``<measure>_snr<X>``, or ``_clean``), and the
noise entry of every layer (``noise_entry.<layer>_snr<X>``).

The primary family, per dataset and protocol (and fusion operator), is :data:`PRIMARY`
compared between fusion layer 1 and every other fusion layer, paired by seed
(:func:`repsim.analysis.stats.compare_paired`), Holm-corrected across the family. In a study
of several operators, :func:`operator_comparisons` adds a second family per dataset, protocol
and fusion layer: every operator against concatenation, Holm-corrected across it. The
smallest detectable difference of each comparison is computed at the Bonferroni level
ALPHA / m of its family of m tests (the level Holm's first step applies), so that "not
distinguishable, no difference above X detectable" never names an X that the corrected test
would not have let through. Cells with fewer than :data:`MIN_SEEDS` paired seeds get no
test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from repsim.analysis.stats import compare_paired, holm, normalized_auc
from repsim.conditions import MODALITIES, NOISE_KINDS
from repsim.models.config import DEFAULT_FUSION_OP, FUSION_OPS

PRIMARY = ("clean_accuracy", *(f"auc_{kind}" for kind in NOISE_KINDS))
SECONDARY = (*(f"removed_{m}" for m in MODALITIES), "reliance_index", "probe_heard",
             "probe_seen")
MIN_SEEDS = 3
ALPHA = 0.05
KEYS = ["dataset", "protocol", "fusion_layer", "seed"]
OPERATOR = "fusion_op"  # the results column of a study with several fusion operators
# Mechanism measures: the noise entry (``noise_entry.<layer>`` per layer), the heard and the
# seen digit surviving noise (``survival_<heard|seen>``) and the gate's audio share.
NOISE_ENTRY, SURVIVAL, GATE_AUDIO = "noise_entry", "survival", "gate_audio"
MECHANISM = (NOISE_ENTRY, SURVIVAL, GATE_AUDIO)


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
                family: tuple[str, ...] = PRIMARY, n_boot: int = 10_000) -> pd.DataFrame:
    """Fusion layer ``reference`` against every other fusion layer, for each measure of
    ``family``, paired by seed, per dataset and protocol (and operator, in a study of
    several); Holm's correction within each such family. ``difference`` is reference minus
    other (positive: the reference is higher)."""
    within = ["dataset", "protocol"] + ([OPERATOR] if OPERATOR in measures else [])
    return _compare(measures, within, "fusion_layer", reference, f"k={reference}", family,
                    n_boot)


def operator_comparisons(measures: pd.DataFrame, reference: str = DEFAULT_FUSION_OP,
                         family: tuple[str, ...] = PRIMARY, n_boot: int = 10_000
                         ) -> pd.DataFrame:
    """Operator ``reference`` against every other operator at each fusion layer, paired by
    seed, per dataset, protocol and fusion layer; Holm's correction within each such family.
    ``difference`` is reference minus other."""
    return _compare(measures, ["dataset", "protocol", "fusion_layer"], OPERATOR, reference,
                    reference, family, n_boot)


def _compare(measures: pd.DataFrame, within: list[str], factor: str, reference, label: str,
             family: tuple[str, ...], n_boot: int) -> pd.DataFrame:
    """``reference`` against every other level of ``factor`` in each group of ``within``
    (one Holm family each); ``label`` names the reference in verdicts."""
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
                    result = compare_paired(paired[reference].to_numpy(),
                                            paired[k].to_numpy(), n_boot=n_boot,
                                            detection_alpha=detection_alpha)
                    row.update({
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
                        "detectable": result.detectable_difference})
                rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["holm_p"] = np.nan
    for _, index in table.groupby(within, sort=False).groups.items():
        tested = [i for i in index if table["t_p"].notna()[i]] if "t_p" in table else []
        if tested:
            table.loc[tested, "holm_p"] = holm(table.loc[tested, "t_p"].to_numpy())
    table["verdict"] = [_verdict(row, label) for _, row in table.iterrows()]
    return table


def _verdict(row, label: str = "k=1") -> str:
    """What a row says: better, worse, not distinguishable (and below what), or untested."""
    p = row.get("holm_p", math.nan)
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return f"not tested ({int(row['n_seeds'])} paired seeds)"
    if p < ALPHA:
        return f"{label} better" if row["difference"] > 0 else f"{label} worse"
    return f"not distinguishable (no difference above {row['detectable']:.3f} detectable)"
