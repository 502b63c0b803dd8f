"""Running one of the study's notebooks: papermill executes notebooks/<name> into a step's run folder,
so the executed copy is kept beside what it wrote. A failing cell becomes a `StepFailed` naming the
notebook and the cell; a kernel that dies before running anything (two kernels racing for one port
under `segan study --jobs`) is started again, up to KERNEL_START_ATTEMPTS times.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

from segan_lib import paths
from segan_lib.errors import SeganError


class StepFailed(SeganError):
    pass


KERNEL_START_ATTEMPTS = 3
KERNEL_DIED = "Kernel died before replying to kernel_info"  # nbclient's words when a kernel fails to start


def run_notebook(notebook: str, run_dir: Path, parameters: dict) -> Path:
    """Execute notebooks/<notebook> with papermill into run_dir; a failure names the notebook and cell."""
    import papermill as pm

    src = paths.notebooks_dir() / notebook
    out = run_dir / notebook
    run_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            # no widget state in the executed copy: a static export then shows each viewer's still image
            pm.execute_notebook(str(src), str(out), parameters=parameters, cwd=str(paths.notebooks_dir()),
                                progress_bar=False, kernel_name="python3", store_widget_state=False)
            return out
        except pm.PapermillExecutionError as exc:
            raise StepFailed(f"notebook {src.name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                             f"the executed notebook is {out}") from None
        except RuntimeError as exc:
            # Jupyter picks a kernel's ports, frees them, then the kernel binds them: a kernel started at
            # the same moment in another process (--jobs) can take one first, and the kernel dies before
            # running any cell. Nothing ran, so starting again is safe.
            if KERNEL_DIED not in str(exc):
                raise
            if attempt == KERNEL_START_ATTEMPTS:
                raise StepFailed(f"notebook {src.name}: its kernel died on start {attempt} times ({exc})") from None
            time.sleep(random.uniform(0.5, 2.0) * attempt)
    raise AssertionError("unreachable")
