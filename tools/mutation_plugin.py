"""pytest plugin loaded into every mutmut run by ``tools/mutation.py`` (``-p mutation_plugin``).

mutmut forks one worker per mutant from a parent that has already run the tests once. tqdm's
default write lock holds a ``multiprocessing`` semaphore, which forked workers share: a worker
killed while holding it (mutmut's timeout, a mutant that crashes inside a progress bar) leaves
it taken, and every later worker that makes a progress bar waits on it forever (seen on
``tasks/review.py``: from one mutant on, every worker hung in ``SemLock.acquire``). A plain
thread lock is copied by fork instead of shared, so workers cannot block one another.
"""

from __future__ import annotations

import threading


def pytest_configure(config) -> None:
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
