"""repsim.analysis: CKA, RSA, linear probes and modality-ablation sensitivity.

Pure functions on arrays, except :mod:`~repsim.analysis.from_files` (``probe_all``,
``ablation_sensitivity``), which walks activation files cell by cell. Inputs may be NumPy
arrays, torch tensors or xarray DataArrays with stimuli on axis 0 (the ``stimulus`` dim for a
DataArray); every other axis is flattened into features, and labelled inputs are matched by
their ``stimulus_id`` coordinate. xarray in, xarray out: given DataArrays, ``cka_matrix``,
``rdm`` and ``compare_rdms`` return DataArrays labelled with the inputs' names and stimulus
coordinates (see :mod:`repsim.analysis._arrays`). Every definition is documented in its module:
:mod:`~repsim.analysis.cka`, :mod:`~repsim.analysis.rsa`, :mod:`~repsim.analysis.probes`,
:mod:`~repsim.analysis.ablation`, :mod:`~repsim.analysis.resampling`. The names below are
imported on first use (:mod:`repsim.lazy`).
"""

from typing import TYPE_CHECKING

from repsim.lazy import lazy_package

if TYPE_CHECKING:
    from repsim.analysis.ablation import modality_sensitivity, reliance_index
    from repsim.analysis.cka import bootstrap_cka, cka, cka_matrix, minibatch_cka, minibatches
    from repsim.analysis.from_files import ablation_sensitivity, probe_all
    from repsim.analysis.probes import ProbeResult, linear_probe, probe_cells
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

__all__ = [
    "BootstrapResult",
    "PermutationResult",
    "ProbeResult",
    "ablation_sensitivity",
    "average_by_condition",
    "bootstrap",
    "bootstrap_cka",
    "bootstrap_compare_rdms",
    "categorical_rdm",
    "cka",
    "cka_matrix",
    "compare_rdms",
    "kendall_tau_a",
    "linear_probe",
    "minibatch_cka",
    "minibatches",
    "modality_sensitivity",
    "permutation_test",
    "permutation_test_rdms",
    "probe_all",
    "probe_cells",
    "rdm",
    "reliance_index",
]

lazy_package(__name__)
