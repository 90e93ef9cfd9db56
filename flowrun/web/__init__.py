"""``flowrun ui``: a read-only web view of a state database, on the standard library only.

``start_ui(db_path_or_store, host="127.0.0.1", port=8765)`` serves it on a daemon thread and
returns a ``UiServer`` (``url``, ``close()``); ``flowrun ui`` and ``flowrun serve --ui`` are
built on it. The page is one static HTML/CSS/JS file set shipped in ``static/``; the run's DAG
is drawn as SVG on the server (``_svg``); what the pages show is built in ``_data``.
"""

from __future__ import annotations

from ._server import UiServer, open_read_only, start_ui

__all__ = ["UiServer", "open_read_only", "start_ui"]
