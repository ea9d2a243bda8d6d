"""RDMs to and from rsatoolbox (``pip install -e '.[rsatoolbox]'``; optional).

repsim keeps an RDM as a square matrix, NumPy or a DataArray ``(stimulus, stimulus_)`` (a
stack: ``(representation, stimulus, stimulus_)``) as [repsim.analysis.rdm][] returns it;
rsatoolbox keeps the upper triangles in an ``rsatoolbox.rdm.RDMs`` with descriptors. Stimulus
coordinates become pattern descriptors, a stack's coordinates (a single RDM's scalar ones)
rdm descriptors, other attributes descriptors, and back.

The two libraries name dissimilarities differently. An RDM's ``metric`` (repsim's
[rdm][repsim.analysis.rdm] name) is recorded as rsatoolbox's ``dissimilarity_measure``
under ``MEASURES``, and read back the same way:

- "correlation" is "correlation" in both (rsatoolbox's ``calc_rdm`` method "correlation");
- "sqeuclidean_mean" (``||u - v||^2 / p`` over p features) is rsatoolbox's "squared
  euclidean", what its ``calc_rdm`` methods "euclidean" and "mahalanobis" (without a noise
  matrix) compute;
- "euclidean", "sqeuclidean" and "cosine" have no rsatoolbox method; they are recorded as
  "euclidean (not divided by the number of channels)", "squared euclidean (not divided by
  the number of channels)" and "cosine". rsatoolbox's own "euclidean" measure (the
  ``sqrt_transform`` of "squared euclidean") is ``||u - v|| / sqrt(p)``, not repsim's.

A measure repsim does not compute (e.g. "crossnobis", or rsatoolbox's "euclidean") comes
back in ``attrs["dissimilarity_measure"]``, never as a repsim ``metric``. Comparisons:
[compare_rdms][repsim.analysis.compare_rdms] methods "spearman", "pearson", "kendall_tau_a"
and "cosine" are rsatoolbox's ``compare`` methods "spearman", "corr", "tau-a" and "cosine".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from repsim.analysis._arrays import (
    REPRESENTATION_DIM,
    STIMULUS_DIM,
    as_rdm_stack,
    check_choice,
    coords_along,
    label,
    scalar_labels,
)

INSTALL = "pip install -e '.[rsatoolbox]'"
MEASURES = {  # repsim rdm metric -> rsatoolbox dissimilarity_measure (one per metric)
    "correlation": "correlation",
    "sqeuclidean_mean": "squared euclidean",
    "euclidean": "euclidean (not divided by the number of channels)",
    "sqeuclidean": "squared euclidean (not divided by the number of channels)",
    "cosine": "cosine",
}
METRIC_OF = {measure: metric for metric, measure in MEASURES.items()}
METRIC_ATTR = "metric"
MEASURE_ATTR = "dissimilarity_measure"
SYMMETRY_TOLERANCE = 1e-12  # relative to the largest entry: rounding, not a different RDM


def to_rsatoolbox(rdm: ArrayLike, metric: str | None = None) -> Any:
    """repsim RDM(s) as an ``rsatoolbox.rdm.RDMs``.

    rsatoolbox stores only the upper triangle, so an RDM that is not symmetric with a zero
    diagonal is refused rather than silently cut.

    Parameters
    ----------
    rdm
        An ``(n, n)`` RDM or a ``(k, n, n)`` stack, NumPy or labelled.
    metric
        The repsim metric the RDM was computed with; ``None``: what its attributes say
        (``metric``, or an rsatoolbox ``dissimilarity_measure``), else unknown.

    Returns
    -------
    rsatoolbox.rdm.RDMs
        With the stimulus coordinates as pattern descriptors and the measure named as the
        module docstring says.

    Raises
    ------
    ValueError
        For a metric that contradicts the attributes, an unknown metric, or an RDM that is not
        symmetric with a zero diagonal.
    ImportError
        When rsatoolbox is not installed.
    """
    rsatoolbox = _rsatoolbox()
    stack, single = as_rdm_stack(rdm, "rdm")
    _check_symmetric(stack)
    labelled = rdm if isinstance(rdm, xr.DataArray) else None
    descriptors = dict(labelled.attrs) if labelled is not None else {}
    stated_metric, stated_measure = (descriptors.pop(key, None)
                                     for key in (METRIC_ATTR, MEASURE_ATTR))
    stated = _measure_of(stated_metric) or stated_measure
    measure = _measure_of(metric) or stated
    if stated is not None and measure != stated:
        raise ValueError(f"metric {metric!r} contradicts the RDM's attributes, which say "
                         f"{stated_metric or stated!r}")
    patterns: dict[str, np.ndarray] = {}
    per_rdm: dict[str, np.ndarray] = {}
    if labelled is not None:
        patterns = coords_along(labelled, str(labelled.dims[-2]))
        per_rdm = {name: np.array([value]) for name, value in scalar_labels(labelled).items()} \
            if single else coords_along(labelled, str(labelled.dims[0]))
    return rsatoolbox.rdm.RDMs(stack, dissimilarity_measure=measure, descriptors=descriptors,
                               rdm_descriptors=per_rdm, pattern_descriptors=patterns)


def from_rsatoolbox(rdms: Any) -> xr.DataArray:
    """An ``rsatoolbox.rdm.RDMs`` as a labelled repsim RDM.

    Pattern descriptors become stimulus coordinates on both axes; rsatoolbox's default
    ``index`` descriptors (0, 1, ...) are left out. NaN entries (pairs rsatoolbox left
    unmeasured) stay NaN.

    Parameters
    ----------
    rdms
        The rsatoolbox RDMs.

    Returns
    -------
    xarray.DataArray
        One RDM: ``(stimulus, stimulus_)`` with the rdm descriptors as scalar coordinates;
        several: ``(representation, stimulus, stimulus_)``.

    Raises
    ------
    TypeError
        For anything but an ``rsatoolbox.rdm.RDMs``.
    ImportError
        When rsatoolbox is not installed.
    """
    rsatoolbox = _rsatoolbox()
    if not isinstance(rdms, rsatoolbox.rdm.RDMs):
        raise TypeError(f"from_rsatoolbox needs an rsatoolbox.rdm.RDMs, got "
                        f"{type(rdms).__name__}")
    attrs = dict(rdms.descriptors)
    metric = METRIC_OF.get(rdms.dissimilarity_measure)
    if metric is not None:
        attrs[METRIC_ATTR] = metric
    elif rdms.dissimilarity_measure is not None:
        attrs[MEASURE_ATTR] = rdms.dissimilarity_measure
    stimulus = (STIMULUS_DIM, _descriptor_arrays(rdms.pattern_descriptors, rdms.n_cond))
    per_rdm = _descriptor_arrays(rdms.rdm_descriptors, rdms.n_rdm)
    matrices = rdms.get_matrices()
    if rdms.n_rdm == 1:
        return label(matrices[0], [stimulus, stimulus],
                     {name: values[0] for name, values in per_rdm.items()}, attrs)
    return label(matrices, [(REPRESENTATION_DIM, per_rdm), stimulus, stimulus], attrs=attrs)


def _rsatoolbox():
    """The rsatoolbox package; ImportError saying how to install it when it is missing."""
    try:
        import rsatoolbox.rdm
    except ImportError as error:
        raise ImportError(f"converting RDMs to and from rsatoolbox needs rsatoolbox: "
                          f"{INSTALL}") from error
    return rsatoolbox


def _measure_of(metric: str | None) -> str | None:
    """rsatoolbox's name for a repsim metric (None for None); ValueError for an unknown one."""
    if metric is None:
        return None
    check_choice(metric, list(MEASURES), "metric")
    return MEASURES[metric]


def _check_symmetric(stack: np.ndarray) -> None:
    scale = SYMMETRY_TOLERANCE * np.abs(stack).max()
    asymmetry = np.abs(stack - stack.transpose(0, 2, 1)).max()
    if asymmetry > scale:
        raise ValueError(f"rdm is not symmetric (largest |d_ij - d_ji| = {asymmetry:.3g}); "
                         f"rsatoolbox keeps only the upper triangle")
    diagonal = np.abs(np.diagonal(stack, axis1=1, axis2=2)).max()
    if diagonal > scale:
        raise ValueError(f"rdm has a non-zero diagonal (largest |d_ii| = {diagonal:.3g}); "
                         f"rsatoolbox drops the diagonal")


def _descriptor_arrays(descriptors: dict, count: int) -> dict[str, np.ndarray]:
    """Descriptors as arrays, without rsatoolbox's default ``index`` (0..count-1)."""
    arrays = {name: np.asarray(values) for name, values in descriptors.items()}
    if "index" in arrays and np.array_equal(arrays["index"], np.arange(count)):
        del arrays["index"]
    return arrays
