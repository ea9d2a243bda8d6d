"""repsim's temporal generalization against MNE-Python's, timed in one run on the same data
and folds, values compared.

Data: activation-like time courses, ``(stimuli, steps, features)`` float32: each step the
features of a random ReLU network of a rank-16 code whose class information grows over the
steps (chance at the first step, clear by the middle), 10 balanced classes.

repsim: ``repsim.analysis.temporal_generalization(X, y)`` (its batched logistic solver, C = 1).
MNE: ``GeneralizingEstimator(make_pipeline(StandardScaler(), LogisticRegression(C=1)))`` with
``cross_val_multiscore`` on the same 5 stratified folds, one job: what people use for
temporal generalization of MEG/EEG. The two fit the same model (L2 multinomial logistic
regression on features standardized with the training rows), each to its own tolerance; the
script prints both times, their ratio (target >= 10x), the largest difference between the
two accuracy matrices and how many held-out predictions agree.

    python benchmarks/bench_temporal.py                 # 400 stimuli x 8 steps x 1000 features
    python benchmarks/bench_temporal.py --steps 16 --features 4000
    python benchmarks/bench_temporal.py --quick         # small sizes, seconds
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from repsim.analysis import temporal_generalization


def time_courses(stimuli: int, steps: int, features: int, classes: int = 10, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(stimuli, steps, features)`` float32 states whose class code grows over the steps."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(stimuli) % classes)
    centers = rng.normal(size=(classes, 16))
    weights = rng.normal(size=(16, features)) / 4
    states = np.empty((stimuli, steps, features), dtype=np.float32)
    for t in range(steps):
        strength = min(1.0, t / max(1, steps // 2))
        code = strength * centers[labels] + rng.normal(size=(stimuli, 16))
        states[:, t] = np.maximum(code @ weights + 0.3 * rng.normal(size=(stimuli, features)),
                                  0)
    return states, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stimuli", type=int, default=400)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 x 4 x 200: seconds")
    args = parser.parse_args()
    if args.quick:
        args.stimuli, args.steps, args.features = 100, 4, 200
    from mne.decoding import GeneralizingEstimator, cross_val_multiscore

    x, y = time_courses(args.stimuli, args.steps, args.features)
    print(f"{platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.stimuli} stimuli x {args.steps} steps x "
          f"{args.features} features, 10 classes, 5 folds")
    started = time.perf_counter()
    ours = temporal_generalization(x, y)
    ours_seconds = time.perf_counter() - started

    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x[:, 0], y))
    started = time.perf_counter()
    theirs = cross_val_multiscore(GeneralizingEstimator(estimator, scoring="accuracy",
                                                        n_jobs=1, verbose=False),
                                  x.transpose(0, 2, 1), y, cv=folds, n_jobs=1,
                                  verbose=False).mean(0)
    mne_seconds = time.perf_counter() - started
    # the held-out predictions of the same fits, for the agreement of the two solvers
    sklearn = temporal_generalization(x, y, estimator=estimator)
    agreement = float(np.mean(ours.predictions == sklearn.predictions))
    print(f"repsim temporal_generalization  {ours_seconds:8.2f} s")
    print(f"MNE GeneralizingEstimator       {mne_seconds:8.2f} s")
    print(f"ratio (MNE / repsim)            {mne_seconds / ours_seconds:8.1f} x  (target >= 10 x)")
    print(f"largest accuracy difference     {np.abs(ours.scores - theirs).max():8.4f}  "
          f"(MNE's matrix equals repsim's with its estimator: "
          f"{np.abs(sklearn.scores - theirs).max():.1e})")
    print(f"held-out predictions that agree {100 * agreement:8.2f} %")


if __name__ == "__main__":
    main()
