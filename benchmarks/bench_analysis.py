"""repsim.analysis against its peers: speed ratios measured in one run, values checked.

Data: activation-like representations, one per "cell" (layer x time step): the features of a
random two-layer ReLU network with a rank-16 bottleneck, each cell its own network, all fed
the same clustered inputs (10 classes), stored as float32 as activation files store them.

1. CKA. ``cka_matrix`` over every pair of the cells (linear, biased) against a pairwise loop
   over a textbook NumPy implementation of Kornblith et al.'s (2019) formulas (Gram matrix,
   centering as ``H K H`` with ``H = I - 11^T / n``, HSIC ratio) on float64 copies, i <= j.
   Target >= 30x, values to 1e-8.
2. RSA. ``rdm`` (correlation distance) + ``compare_rdms`` (Spearman) over every pair against
   rsatoolbox ``calc_rdm`` + ``compare`` (its correlation RDM is the same quantity).
   Target >= 5x, identical values (to float rounding).
3. Probes. 10-class decoding, 5 stratified folds, features standardized on each training
   fold. (a) At one C: ``probe_cells(cells, Cs=[C])`` against scikit-learn
   ``StandardScaler`` + ``LogisticRegression(C)`` fit fold by fold in a loop on the same
   folds; target >= 10x at accuracy within 1 point. scikit-learn takes minutes per cell, so
   it runs on ``--peer-cells`` cells and its time is scaled to all cells (each cell costs
   the same: same sizes). (b) Our default protocol (nested choice of C among 6 values, 3
   inner folds) on every cell, against scikit-learn's ``GridSearchCV`` on one outer fold of
   one cell, scaled to all folds and cells (an estimate; printed as such).

With CUDA available, the repsim side of 1 and 3 also runs on the GPU (peers stay on the CPU).

    python benchmarks/bench_analysis.py                  # full sizes: 40 x 2000 x 2048
    python benchmarks/bench_analysis.py --quick          # small sizes, about a minute
    python benchmarks/bench_analysis.py --skip rsa,nested --peer-cells 2
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from repsim.analysis import cka_matrix, compare_rdms, probe_cells, rdm
from repsim.analysis.probes import DEFAULT_CS

SECTIONS = ("cka", "rsa", "fixed", "nested")


# --------------------------------------------------------------------------- data


def activation_cells(cells: int, stimuli: int, features: int, classes: int = 10,
                     seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """``cells`` float32 (stimuli x features) representations of one clustered input set."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(stimuli) % classes)
    centers = rng.normal(size=(classes, 32))
    inputs = centers[labels] + 1.6 * rng.normal(size=(stimuli, 32))
    reps = []
    for _ in range(cells):
        hidden = np.maximum(inputs @ rng.normal(size=(32, 16)) / np.sqrt(32), 0)
        out = np.maximum(hidden @ rng.normal(size=(16, features)) / 4
                         + 0.1 * rng.normal(size=features), 0)
        reps.append((out + 0.05 * rng.normal(size=out.shape)).astype(np.float32))
    return reps, labels


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def interleaved(ours, peer_parts):
    """Time ``ours`` before, between and after the peer's parts (the machine is shared: load
    changes over minutes), so both sides see the same mix; returns our last result, our
    median seconds, the number of our runs, the parts' results and their total seconds."""
    result, seconds = timed(ours)
    times, peer_results, peer_seconds = [seconds], [], 0.0
    for part in peer_parts:
        value, seconds = timed(part)
        peer_results.append(value)
        peer_seconds += seconds
        result, seconds = timed(ours)
        times.append(seconds)
    return result, float(np.median(times)), len(times), peer_results, peer_seconds


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


# --------------------------------------------------------------------------- 1. CKA


def textbook_gram_linear(x: np.ndarray) -> np.ndarray:
    return x @ x.T


def textbook_center(gram: np.ndarray) -> np.ndarray:
    """``H K H`` with the centering matrix ``H = I - 11^T / n``, written out (the library
    subtracts row and column means instead), so that the check is independent."""
    n = gram.shape[0]
    centering = np.eye(n) - np.ones((n, n)) / n
    return centering @ gram @ centering


def textbook_cka(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
    gram_x, gram_y = textbook_center(gram_x), textbook_center(gram_y)
    return float(gram_x.ravel() @ gram_y.ravel()
                 / (np.linalg.norm(gram_x) * np.linalg.norm(gram_y)))


def bench_cka(reps: list[np.ndarray], devices: list[str]) -> None:
    k, (n, p) = len(reps), reps[0].shape
    print(f"\n1. CKA: cka_matrix, {k} representations x {n} stimuli x {p} features (linear)")
    doubles = [r.astype(np.float64) for r in reps]
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    textbook = np.empty((k, k))

    def textbook_pairs(chunk):
        for i, j in chunk:
            textbook[i, j] = textbook[j, i] = textbook_cka(textbook_gram_linear(doubles[i]),
                                                           textbook_gram_linear(doubles[j]))

    halves = (pairs[:len(pairs) // 2], pairs[len(pairs) // 2:])
    ours, seconds, runs, _, baseline = interleaved(
        lambda: cka_matrix(reps), [lambda h=h: textbook_pairs(h) for h in halves])
    difference = float(np.abs(ours - textbook).max())
    print(f"  repsim cka_matrix (cpu), median of {runs}   {seconds:9.2f} s")
    print(f"  textbook NumPy pairwise loop ({len(pairs)} pairs) {baseline:9.2f} s")
    print(f"  speed-up {baseline / seconds:.1f}x (target >= 30x: "
          f"{verdict(baseline / seconds >= 30)}); max |difference| {difference:.1e} "
          f"(target <= 1e-8: {verdict(difference <= 1e-8)})")
    for device in devices:
        cka_matrix(reps[:2], device=device)  # warm-up: CUDA context, kernels
        torch.cuda.synchronize()
        on_device, seconds = timed(cka_matrix, reps, device=device)
        difference = float(np.abs(on_device - textbook).max())
        print(f"  repsim cka_matrix ({device})             {seconds:9.2f} s: "
              f"{baseline / seconds:.1f}x the CPU textbook loop; max |difference| "
              f"{difference:.1e}")


# --------------------------------------------------------------------------- 2. RSA


def bench_rsa(reps: list[np.ndarray]) -> None:
    import rsatoolbox

    k, (n, p) = len(reps), reps[0].shape
    print(f"\n2. RSA: correlation RDMs + Spearman comparisons of every pair, {k} representations"
          f" x {n} stimuli x {p} features")

    def ours_once():
        stack = rdm(reps, "correlation")
        return compare_rdms(stack, stack, "spearman"), stack

    doubles = [r.astype(np.float64) for r in reps]  # in float32 it rounds at 1e-7
    halves = (doubles[:k // 2], doubles[k // 2:])
    parts = [lambda h=h: rsatoolbox.rdm.calc_rdm([rsatoolbox.data.Dataset(r) for r in h],
                                                 method="correlation") for h in halves]
    (matrix, stack), seconds, runs, partial, baseline = interleaved(ours_once, parts)
    rdms = rsatoolbox.rdm.concat(partial)
    theirs, compare_seconds = timed(rsatoolbox.rdm.compare, rdms, rdms, method="spearman")
    baseline += compare_seconds
    print(f"  repsim rdm + compare_rdms, median of {runs} {seconds:9.2f} s")
    print(f"  rsatoolbox calc_rdm + compare          {baseline:9.2f} s")
    i, j = np.triu_indices(n, 1)
    rdm_difference = float(np.abs(stack[:, i, j] - rdms.get_vectors()).max())
    difference = float(np.abs(matrix - theirs).max())
    print(f"  speed-up {baseline / seconds:.1f}x (target >= 5x: "
          f"{verdict(baseline / seconds >= 5)}); max |difference| RDM entries "
          f"{rdm_difference:.1e}, Spearman {difference:.1e}")


# --------------------------------------------------------------------------- 3. probes


def sklearn_fold_loop(x: np.ndarray, y: np.ndarray, c: float, folds) -> np.ndarray:
    """scikit-learn's out-of-fold predictions at one C: the 'LogisticRegression in a loop'."""
    x = x.astype(np.float64)
    predictions = np.empty_like(y)
    for train, test in folds:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
        predictions[test] = model.fit(x[train], y[train]).predict(x[test])
    return predictions


def bench_fixed(reps, labels, c: float, peer_cells: int, devices: list[str]) -> None:
    k, (n, p) = len(reps), reps[0].shape
    print(f"\n3a. Probes at C={c}: {k} cells x {n} stimuli x {p} features, 10 classes, "
          f"5 folds")
    ours, seconds = timed(probe_cells, reps, labels, Cs=[c])
    print(f"  repsim probe_cells (cpu), {k} cells     {seconds:9.2f} s")
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(reps[0], labels))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = [sklearn_fold_loop(reps[i], labels, c, folds) for i in range(peer_cells)]
    baseline = (time.perf_counter() - start) * k / peer_cells
    print(f"  scikit-learn loop, {peer_cells} cells measured,   "
          f"{baseline:9.2f} s scaled to {k} cells")
    gaps = [abs(ours[i].accuracy - np.mean(theirs[i] == labels)) for i in range(peer_cells)]
    agree = np.mean([np.mean(ours[i].predictions == theirs[i]) for i in range(peer_cells)])
    print(f"  accuracy: repsim {np.mean([r.accuracy for r in ours[:peer_cells]]):.4f}, "
          f"scikit-learn {np.mean([np.mean(t == labels) for t in theirs]):.4f} (same cells); "
          f"max gap {100 * max(gaps):.2f} points, {100 * agree:.1f} % identical predictions")
    print(f"  speed-up {baseline / seconds:.1f}x (target >= 10x: "
          f"{verdict(baseline / seconds >= 10)}); accuracy within 1 point: "
          f"{verdict(max(gaps) <= 0.01)}")
    for device in devices:
        probe_cells(reps[:1], labels, Cs=[c], device=device)  # warm-up
        on_device, seconds = timed(probe_cells, reps, labels, Cs=[c], device=device)
        gap = max(abs(a.accuracy - b.accuracy) for a, b in zip(on_device, ours, strict=True))
        print(f"  repsim probe_cells ({device})            {seconds:9.2f} s: "
              f"{baseline / seconds:.1f}x scikit-learn on the CPU; max accuracy gap to the "
              f"CPU run {100 * gap:.2f} points")


def bench_nested(reps, labels, cells: int, devices: list[str]) -> None:
    reps = reps[:cells]
    k, (n, p) = len(reps), reps[0].shape
    print(f"\n3b. Probes, default protocol (C from {len(DEFAULT_CS)} values by 3-fold nested "
          f"validation): {k} cells x {n} stimuli x {p} features")
    ours, seconds = timed(probe_cells, reps, labels)
    print(f"  repsim probe_cells (cpu), {k} cells     {seconds:9.2f} s "
          f"({seconds / k:.1f} s per cell, {5 * (3 + 1) * len(DEFAULT_CS)} fits per cell)")
    train, test = next(StratifiedKFold(5, shuffle=True, random_state=0).split(reps[0], labels))
    x = reps[0].astype(np.float64)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        {"logisticregression__C": list(DEFAULT_CS)},
        cv=StratifiedKFold(3, shuffle=True, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted, one_fold = timed(search.fit, x[train], labels[train])
    estimate = one_fold * 5 * k
    accuracy = np.mean(fitted.predict(x[test]) == labels[test])
    print(f"  scikit-learn GridSearchCV, one outer fold of one cell {one_fold:9.2f} s "
          f"-> about {estimate:.0f} s for {k} cells x 5 folds (estimate)")
    print(f"  that fold: repsim accuracy {ours[0].fold_accuracies[0]:.4f} with C="
          f"{ours[0].regularization[0]:g}, scikit-learn {accuracy:.4f} with C="
          f"{fitted.best_params_['logisticregression__C']:g}")
    print(f"  estimated speed-up {estimate / seconds:.0f}x")
    for device in devices:
        on_device, seconds = timed(probe_cells, reps, labels, device=device)
        print(f"  repsim probe_cells ({device})            {seconds:9.2f} s "
              f"({estimate / seconds:.0f}x the scikit-learn estimate)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (8 cells x 500 stimuli x 256 features)")
    parser.add_argument("--peer-cells", type=int, default=None,
                        help="cells scikit-learn runs on in 3a (default: 4, quick: 2)")
    parser.add_argument("--nested-cells", type=int, default=None,
                        help="cells for 3b (default: all)")
    parser.add_argument("--C", type=float, default=0.01, help="C for 3a (default 0.01)")
    parser.add_argument("--skip", default="", help=f"comma-separated from {SECTIONS}")
    parser.add_argument("--cpu-only", action="store_true", help="do not use a GPU")
    args = parser.parse_args()
    cells, stimuli, features = (8, 500, 256) if args.quick else (40, 2000, 2048)
    peer_cells = args.peer_cells or (2 if args.quick else 4)
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(SECTIONS):
        parser.error(f"--skip takes {', '.join(SECTIONS)}")
    devices = ["cuda"] if torch.cuda.is_available() and not args.cpu_only else []
    reps, labels = activation_cells(cells, stimuli, features)
    print(f"repsim.analysis benchmark on {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, numpy {np.__version__}, torch "
          f"{torch.__version__}" + (f", GPU {torch.cuda.get_device_name()}" if devices else ""))
    if "cka" not in skip:
        bench_cka(reps, devices)
    if "rsa" not in skip:
        bench_rsa(reps)
    if "fixed" not in skip:
        bench_fixed(reps, labels, args.C, peer_cells, devices)
    if "nested" not in skip:
        bench_nested(reps, labels, args.nested_cells or cells, devices)


if __name__ == "__main__":
    main()
