"""CPU threads of a training process, so that several runs can share one machine (framework-free).

Two choices, both made before a framework loads (tools/train.py and tools/bench.py call passive_openmp()
first thing):
- thread counts default to the cores this process may use (os.sched_getaffinity: a `taskset` or a
  container's cpuset counts, the machine's total does not), or to OMP_NUM_THREADS where it is set;
  --threads overrides both;
- OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE): a thread with no work sleeps instead of spinning
  on its core. torch's intra-op pool is OpenMP; spinning threads of one run took the cores from another run
  started next to it (two trainings on a 2-core machine slowed each other more than 20x). Threads are not
  split between runs: each run keeps all its cores when alone. An OMP_WAIT_POLICY already set is kept.
"""

from __future__ import annotations

import os


def default_threads() -> int:
    """OMP_NUM_THREADS when set to a positive number (an explicit choice), else the cores this process may
    run on."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def passive_openmp() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless set; effective only before the OpenMP runtime loads (torch's import)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
