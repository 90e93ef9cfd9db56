"""pytest plugin for flowrun: fixtures, markers, virtual time and ``pytest --flowrun``.

Registered through the ``pytest11`` entry point ``flowrun`` (disable with ``-p no:flowrun``).
The reusable pieces live in ``flowrun.testing``; this package is the pytest layer over them.
"""

__all__: list[str] = []
