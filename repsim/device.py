"""Where and in which arithmetic a model runs: device choice, CPU threads, bf16 autocast.

torch is imported by the functions that use it, so that command lines can name these
choices in their parsers without loading it."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Arithmetic of training and evaluation: bf16 autocast, float32, or auto (bf16 on CUDA).
PRECISIONS = ("auto", "float32", "bf16")
# What OpenMP and BLAS libraries loaded after limit_threads read for their pool sizes.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Pairs per forward pass. On the CPU the demo's network evaluates 2x faster at 64 than at 256
# (1 thread: 3.6 s vs 7.0 s for 800 test pairs); the noise drawn does not depend on it.
EVAL_BATCH_SIZE = 64


def check_device_name(name: str) -> None:
    """Check a device name without importing torch.

    Parameters
    ----------
    name
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises
    ------
    ValueError
        For any other name.
    """
    if name not in ("auto", "cpu", "cuda") and not str(name).startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")


def resolve_device(name: str) -> torch.device:
    """The device a name means.

    Parameters
    ----------
    name
        ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        For CUDA without one, or any other name.
    """
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # e.g. cuda:x
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here")
    return device


def available_cores() -> int:
    """The cores this process may run on.

    Returns
    -------
    int
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def limit_threads(threads: int) -> None:
    """Give this process ``threads`` compute threads.

    Sets torch's pool, and the OpenMP and BLAS pools of every library already loaded (numpy's
    OpenBLAS reads its environment variable only when it loads, so setting the variable alone
    would leave it on every core) and of those loaded later (the environment variables).

    Parameters
    ----------
    threads
        At least 1.

    Raises
    ------
    ValueError
        For fewer than 1.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    import torch
    from threadpoolctl import threadpool_limits

    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    threadpool_limits(limits=threads)
    torch.set_num_threads(threads)


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether a precision means bf16 autocast on a device.

    ``auto`` is bf16 on CUDA (tensor cores) and float32 on the CPU, so that CPU results stay
    bit-reproducible unless bf16 is asked for; CPUs with native bf16 instructions (AVX512-BF16,
    AMX) run convolutions about twice as fast in it.

    Parameters
    ----------
    precision
        One of ``PRECISIONS``: ``auto``, ``bf16`` or ``float32``.
    device
        Where the model runs.

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        For an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, enabled: bool | None) -> contextlib.AbstractContextManager:
    """bf16 autocast, or nothing.

    Parameters
    ----------
    device
        Where the model runs.
    enabled
        Whether to autocast; ``None``: exactly when on CUDA.

    Returns
    -------
    contextlib.AbstractContextManager
    """
    if enabled is None:
        enabled = uses_bf16("auto", device)
    if not enabled:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
