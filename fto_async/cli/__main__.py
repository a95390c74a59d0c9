"""``python -m fto_async.cli``: the same as the ``fto-async`` command."""

from ._main import main

raise SystemExit(main())
