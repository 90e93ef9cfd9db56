"""``python -m flowrun``: the ``flowrun`` command line."""

from .cli import main

raise SystemExit(main())
