"""What the analysis functions accept by name, and their fixed limits, in a module without
torch or scikit-learn: command lines offer these as choices before any analysis is loaded."""

# CKA kernels (repsim.analysis.cka).
KERNELS = ("linear", "rbf")
# The fewest stimuli the debiased (unbiased HSIC) estimators accept.
MIN_DEBIASED_STIMULI = 4
# RDM dissimilarities and RDM comparison methods (repsim.analysis.rsa).
METRICS = ("correlation", "euclidean", "sqeuclidean", "cosine", "sqeuclidean_mean")
METHODS = ("spearman", "pearson", "kendall_tau_a", "cosine")
# The inverse regularisation strengths a linear probe chooses from by nested cross-validation
# (repsim.analysis.probes).
DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
