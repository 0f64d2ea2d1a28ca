"""A batch spread over a Ray cluster: `ohp run --ray ADDRESS|local --workers N`.

    driver.run_on_ray -> batch.FileRun.plan (this process) -> actors.Recogniser.process (a worker: the pass)
                      -> batch.FileRun.save (this process: one transaction, then the files)

Ray schedules the workers (actors, each loading the model once) on the cluster's CPUs and GPUs and restarts
one whose process or node dies; the driver hands each worker one recording at a time and saves what comes
back through the same steps as the single-process batch (pipeline.batch), so skipping, resuming and
--force behave the same. Only the driver writes to the database.

Ray is an optional extra (`pip install 'ohp[cluster]'`): it is imported here, when a cluster run starts.
"""

from __future__ import annotations

from types import ModuleType

from pipeline.errors import OhpError


def require_ray() -> ModuleType:
    """The ray module, or an error saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise OhpError(f"ohp run --ray needs Ray, which is not installed ({e}): pip install 'ohp[cluster]'") from e
    return ray
