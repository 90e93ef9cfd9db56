"""The ``flowrun`` command line (also ``python -m flowrun``): run, inspect and resume pipelines.

Exit codes: 0 success; 1 a run FAILED, a DAG is invalid or the pipeline's own code failed
(e.g. its context factory raised); 2 a usage error (bad option, a TARGET that does not import,
an unknown DAG, task or run id). Errors go to stderr.

The state lives in the SQLite database ``.flowrun/flowrun.sqlite`` under the current directory
(``--db PATH`` or ``FLOWRUN_DB`` to change it; ``--db :memory:`` keeps nothing), created on
the first run, so ``runs``, ``show`` and ``resume`` work across invocations. Results are
stored as JSON unless ``--serializer pickle`` (or ``FLOWRUN_SERIALIZER=pickle``) says otherwise.
"""

from __future__ import annotations

from ._main import main
from ._store import DEFAULT_DB

__all__ = ["DEFAULT_DB", "main"]
