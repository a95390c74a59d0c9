"""``python -m fto_async.emulator``: run the emulator until SIGINT or SIGTERM.

:func:`add_arguments`, :func:`config_from_args` and :func:`serve` are reusable, e.g. by the
SDK's ``fto-async emulator`` subcommand. Every option defaults to the
:class:`EmulatorConfig` default, documented there.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Any, Final, TextIO

from ._config import EmulatorConfig
from ._server import Emulator

__all__ = ["add_arguments", "config_from_args", "main", "serve"]

_UNLIMITED: Final = "none"


def _opt_float(text: str) -> float | str:
    return _UNLIMITED if text.lower() in (_UNLIMITED, "unlimited") else float(text)


def _opt_int(text: str) -> int | str:
    return _UNLIMITED if text.lower() in (_UNLIMITED, "unlimited") else int(text)


# (flag, EmulatorConfig field, argument type, help)
_OPTIONS: Final[tuple[tuple[str, str, Callable[[str], Any], str], ...]] = (
    ("--qps", "qps", _opt_float, "calls per second per account, or 'none' (default 10)"),
    ("--daily-limit", "daily_limit", _opt_int, "admitted calls per account per UTC day"),
    ("--total-limit", "total_limit", _opt_int, "admitted calls per account in total"),
    ("--balance", "balance", _opt_int, "task-creating submits per account"),
    ("--token-ttl", "token_ttl", float, "token lifetime in real seconds (default 1799)"),
    ("--time-scale", "time_scale", float, "factor on latencies and task durations (default 1)"),
    ("--submit-latency", "submit_latency", float, "submit latency in seconds (default 5)"),
    ("--poll-latency", "poll_latency", float, "poll latency in seconds (default 0.3)"),
    ("--upload-latency", "upload_latency", float, "upload latency in seconds (default 0.5)"),
    ("--task-duration", "task_duration", float, "median task duration in seconds (default 30)"),
    ("--task-duration-sigma", "task_duration_sigma", float, "lognormal sigma (default 0)"),
    ("--workflow-task-duration", "workflow_task_duration", float,
     "median workflow task duration in seconds, e.g. 300 (default: --task-duration)"),
    ("--busy-rate", "busy_rate", float, "probability of 67200100"),
    ("--ambiguous-busy-rate", "ambiguous_busy_rate", float, "submit creates a task, then 67200100"),
    ("--service-error-rate", "service_error_rate", float, "probability of 68300008"),
    ("--http-5xx-rate", "http_5xx_rate", float, "probability of HTTP 503"),
    ("--http-429-rate", "http_429_rate", float,
     "probability of a bare HTTP 429 (no envelope; token path too)"),
    ("--malformed-rate", "malformed_rate", float, "probability of an HTML 502 or cut JSON"),
    ("--drop-rate", "drop_rate", float, "probability of closing without a response"),
    ("--hang-rate", "hang_rate", float, "probability of hanging --hang-seconds"),
    ("--hang-seconds", "hang_seconds", float, "how long a hang lasts (default 30)"),
    ("--fail-rate", "fail_rate", float, "probability that a task ends with task_status 3"),
    ("--seed", "seed", int, "RNG seed for faults, jitter and durations (default 0)"),
    ("--publish-share", "publish_share", float,
     "share of product images (0..1) for which each publication round publishes new designs "
     "(default 0)"),
    ("--publish-round", "publish_round", int,
     "publication rounds so far (default 0); raise it, or POST /_emulator/publish, and a "
     "rescreen finds new High designs for about --publish-share of the rows"),
    ("--workflow-result-path", "workflow_result_path", str,
     "result path of workflow tasks (unknown paths answer 67200101)"),
    ("--string-status", "string_status", str,
     "which kinds answer task_status as 'running'/'success'/'failed': "
     "workflow (default), all or none"),
    ("--key-auth", "key_auth", str,
     "how an sk- key must arrive: any (default), query (?apikey= only) or bearer "
     "(Authorization header only)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser``.

    Args:
        parser: A parser or subparser; :func:`config_from_args` reads the parsed result.
    """
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--client",
        action="append",
        metavar="ID:SECRET",
        help="accepted OAuth client (repeatable; default demo-client:demo-secret)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        metavar="sk-...",
        help="accepted API key (repeatable; default sk-demo)",
    )
    for flag, field, kind, text in _OPTIONS:
        parser.add_argument(flag, dest=f"emulator_{field}", type=kind, help=text)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Build the configuration from options parsed with :func:`add_arguments`.

    Args:
        args: The parsed namespace.

    Returns:
        The configuration; options not given keep the :class:`EmulatorConfig` defaults.

    Raises:
        ValueError: A malformed ``--client`` or an out-of-range value.
    """
    changes: dict[str, Any] = {}
    for _flag, field, _kind, _text in _OPTIONS:
        value = getattr(args, f"emulator_{field}", None)
        if value is not None:
            changes[field] = None if value == _UNLIMITED else value
    if args.client:
        pairs = [entry.split(":", 1) for entry in args.client]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError("--client must be ID:SECRET")
        changes["clients"] = dict(pairs)
    if args.api_key:
        changes["api_keys"] = frozenset(args.api_key)
    return EmulatorConfig(**changes)


def _banner(emulator: Emulator, out: TextIO) -> None:
    config = emulator.config
    lines = [f"fto-async emulator listening on {emulator.base_url}"]
    lines += [f"  OAuth client: id={cid} secret={sec}" for cid, sec in config.clients.items()]
    lines += [f"  API key:      {key}" for key in sorted(config.api_keys)]
    lines.append("Press Ctrl+C to stop.")
    out.write("\n".join(lines) + "\n")
    out.flush()


async def serve(
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    out: TextIO | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, after printing the base URL and the credentials.

    Args:
        config: The behaviour; ``None`` means the defaults.
        host: The address to bind.
        port: The port to bind; 0 picks a free one (the banner shows it).
        out: Where the banner goes, default ``sys.stdout``.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not main thread
            continue
        installed.append(sig)
    try:
        async with Emulator(config, host=host, port=port) as emulator:
            _banner(emulator, out or sys.stdout)
            await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None, *, prog: str = "python -m fto_async.emulator") -> int:
    """Run the emulator from the command line (``fto-async emulator`` comes here too).

    Args:
        argv: The arguments, default ``sys.argv[1:]``.
        prog: the command's name in usage and error messages.

    Returns:
        0 after a clean stop (SIGINT/SIGTERM) or ``--help``, 1 when the address cannot be
        bound, 2 for a usage error.
    """
    try:
        return _main(argv, prog)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else 2


def _main(argv: list[str] | None, prog: str) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the local emulator of the PatSnap open platform (design-patent FTO).",
        epilog=(
            "Fixed behaviour: uploads take up to 4,194,304 bytes inclusive (P010's 4096KB); "
            "unknown paths answer 67200101 (HTTP 404)."
        ),
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    try:
        asyncio.run(serve(config, args.host, args.port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        sys.stderr.write(f"cannot serve on {args.host}:{args.port}: {exc}\n")
        return 1
    return 0
