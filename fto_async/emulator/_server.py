"""``Emulator``: the emulator app served on a local TCP port, as an async context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

from ._app import create_app
from ._config import EmulatorConfig, evolve_config
from ._state import STATE_KEY, EmulatorState
from ._stats import EmulatorStats

__all__ = ["Emulator"]

# Sleeping handlers are woken on shutdown, so this bound is only a safety net.
_SHUTDOWN_TIMEOUT: Final = 5.0


class Emulator:
    """The PatSnap open-platform emulator, served on ``host``:``port`` while in use.

    Example::

        async with Emulator(EmulatorConfig(time_scale=0.001)) as emu:
            async with aiohttp.ClientSession() as session:
                await session.post(f"{emu.base_url}/ai/image-search/submit?apikey=sk-demo", ...)
            print(emu.stats.snapshot())

    Leaving the ``async with`` block ends every pending latency or hang sleep, lets those
    handlers answer, and closes the server. An emulator cannot be started twice.

    Args:
        config: The behaviour (see :class:`EmulatorConfig`); ``None`` means the defaults.
        host: The address to bind, default ``127.0.0.1``.
        port: The port to bind; the default 0 picks a free one (see :attr:`base_url`).
    """

    __slots__ = ("_app", "_base_url", "_closed", "_host", "_port", "_runner")

    def __init__(
        self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """Create the app; nothing listens before :meth:`start` or ``async with``."""
        self._app = create_app(config)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._closed = False

    def __repr__(self) -> str:
        """Show where it listens."""
        where = "closed" if self._closed else self._base_url or "not started"
        return f"<Emulator {where}>"

    async def __aenter__(self) -> Self:
        """Start serving."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving."""
        await self.close()

    async def start(self) -> None:
        """Bind the port and start serving.

        Raises:
            RuntimeError: The emulator was already started.
            OSError: The address cannot be bound.
        """
        if self._runner is not None or self._closed:
            raise RuntimeError("an Emulator can only be started once")
        runner = web.AppRunner(
            self._app, handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Wake every sleeping handler and stop the server (idempotent)."""
        runner, self._runner = self._runner, None
        self._closed = True
        if runner is not None:
            await runner.cleanup()

    @property
    def _state(self) -> EmulatorState:
        return self._app[STATE_KEY]

    @property
    def app(self) -> web.Application:
        """The aiohttp application."""
        return self._app

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server (the real port when ``port=0``).

        Raises:
            RuntimeError: The emulator is not started.
        """
        if self._base_url is None:
            raise RuntimeError("the Emulator is not started")
        return self._base_url

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def stats(self) -> EmulatorStats:
        """The live counters."""
        return self._state.stats

    @property
    def config(self) -> EmulatorConfig:
        """The current configuration."""
        return self._state.config

    def reconfigure(self, **changes: Any) -> EmulatorConfig:
        """Change configuration fields at runtime, e.g. ``emu.reconfigure(busy_rate=0.5)``.

        Args:
            **changes: :class:`EmulatorConfig` fields and their new values.

        Returns:
            The new configuration.

        Raises:
            ValueError: An unknown field, an invalid value, or a new ``workflow_result_path``.
            TypeError: A value of the wrong type.
        """
        config = evolve_config(self._state.config, changes)
        self._state.reconfigure(config)
        return config

    def expire_tokens(self) -> int:
        """Invalidate every issued OAuth token; return how many there were."""
        return self._state.expire_tokens()
