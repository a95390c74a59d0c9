"""``python -m fto_async.emulator``: see :func:`fto_async.emulator.main`."""

from ._cli import main

raise SystemExit(main())
