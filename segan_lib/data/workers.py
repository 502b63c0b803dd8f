"""Process pools of the data layer (cache build, phantom), never started with `fork`.

A forked child copies its parent as it is: once TensorFlow (or any library running threads)
is loaded, the locks other threads held are copied locked, which can hang or crash the child.
The preprocessing and the phantom run from notebooks and from processes that have trained a
model, so their pools use `forkserver` on Linux (children forked from a clean server process)
and `spawn` elsewhere. Their work functions are therefore top-level functions whose arguments
pickle; the results do not depend on the start method.
"""
from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor


def start_method() -> str:
    """'forkserver' on Linux where available, else 'spawn'."""
    if sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes started with `start_method()`."""
    return ProcessPoolExecutor(max_workers=int(workers), mp_context=multiprocessing.get_context(start_method()))
