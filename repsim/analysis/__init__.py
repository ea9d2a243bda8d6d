"""repsim.analysis: CKA, RSA, linear probes, modality-ablation sensitivity and noise entry.

Pure functions on arrays; nothing here imports the activation file format (the analyses of a
whole activation file, ``probe_all`` and ``ablation_sensitivity``, live in
:mod:`repsim.labelled`, and are found here too, imported on first use). Inputs may be NumPy
arrays, torch tensors or xarray DataArrays with stimuli on axis 0 (the ``stimulus`` dim for a
DataArray); every other axis is flattened into features, and labelled inputs are matched by
their ``stimulus_id`` coordinate. xarray in, xarray out: given DataArrays, ``cka_matrix``,
``rdm`` and ``compare_rdms`` return DataArrays labelled with the inputs' names and stimulus
coordinates (see :mod:`repsim.analysis._arrays`). Every definition is documented in its module:
:mod:`~repsim.analysis.cka`, :mod:`~repsim.analysis.rsa`, :mod:`~repsim.analysis.probes`,
:mod:`~repsim.analysis.ablation`, :mod:`~repsim.analysis.noise_entry`,
:mod:`~repsim.analysis.resampling`, :mod:`~repsim.analysis.temporal` (time-resolved: temporal
generalization, decoding onset, RDM movies, cross-temporal similarity). The names below are
imported on first use (:mod:`repsim.lazy`).
"""

from typing import TYPE_CHECKING

from repsim.lazy import lazy_package

if TYPE_CHECKING:
    from repsim.analysis.ablation import modality_sensitivity, reliance_index
    from repsim.analysis.cka import bootstrap_cka, cka, cka_matrix, minibatch_cka, minibatches
    from repsim.analysis.noise_entry import noise_entry
    from repsim.analysis.probes import ProbeResult, linear_probe, probe_cells, transfer_probe
    from repsim.analysis.resampling import (
        BootstrapResult,
        PermutationResult,
        bootstrap,
        permutation_test,
    )
    from repsim.analysis.rsa import (
        average_by_condition,
        bootstrap_compare_rdms,
        categorical_rdm,
        compare_rdms,
        kendall_tau_a,
        permutation_test_rdms,
        rdm,
    )
    from repsim.analysis.temporal import (
        Onset,
        TemporalGeneralization,
        cross_temporal_similarity,
        decoding_onset,
        rdm_movie,
        temporal_generalization,
    )

    # analyses of whole activation files, moved to repsim.labelled: their old names here
    from repsim.labelled import ablation_sensitivity as ablation_sensitivity
    from repsim.labelled import probe_all as probe_all

__all__ = [
    "BootstrapResult",
    "Onset",
    "PermutationResult",
    "ProbeResult",
    "TemporalGeneralization",
    "average_by_condition",
    "bootstrap",
    "bootstrap_cka",
    "bootstrap_compare_rdms",
    "categorical_rdm",
    "cka",
    "cka_matrix",
    "compare_rdms",
    "cross_temporal_similarity",
    "decoding_onset",
    "kendall_tau_a",
    "linear_probe",
    "minibatch_cka",
    "minibatches",
    "modality_sensitivity",
    "noise_entry",
    "permutation_test",
    "permutation_test_rdms",
    "probe_cells",
    "rdm",
    "rdm_movie",
    "reliance_index",
    "temporal_generalization",
    "transfer_probe",
]

lazy_package(__name__)
