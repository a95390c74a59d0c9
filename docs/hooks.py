"""Pages generated from the code at build time, so they cannot drift (an mkdocs hook).

A page holds a marker such as ``<!-- generated: errors -->``; :func:`on_page_markdown`
replaces it with the Markdown the matching ``render_*`` function builds from the code:

* ``errors``: the platform's code table (``fto_async.errors.CODE_TABLE``), the HTTP
  statuses, and every error class with ``retryable`` and ``fatal``;
* ``cli``: every ``fto-async`` command and flag, from ``fto_async.cli.build_parser()``;
* ``emulator``: the emulator's options, from ``fto_async.emulator._cli.add_arguments``;
* ``reference``: one mkdocstrings block per name in ``fto_async.__all__``.

``tests/test_docs.py`` imports this file too. A code or error class with no advice
below fails the build (``KeyError``), which is the point.
"""

from __future__ import annotations

import argparse
import inspect
import re
from typing import Any

#: What the user should do, per error class (a platform code's class decides).
ADVICE: dict[str, str] = {
    "QuotaExceededError": "Wait for the quota to reset (daily: next UTC day) or buy more; "
    "the batch stops, rerun the same command later to resume.",
    "InsufficientBalanceError": "Top up the account's balance or call count, then rerun.",
    "RateLimitedError": "Nothing: retried after a pause, and the rate gate slows down. "
    "If it is frequent, lower `qps` to the account's real limit or share one gate "
    "(`redis_url`).",
    "AuthenticationError": "Check `PATSNAP_API_KEY`, or `PATSNAP_CLIENT_ID` and "
    "`PATSNAP_CLIENT_SECRET` (`fto-async doctor` tells which); a client may be disabled.",
    "PermissionDeniedError": "Ask for this API in the account's package, or a larger package.",
    "ClientExpiredError": "Renew the client's activation period on the platform.",
    "IllegalRequestError": "The gateway refused the request as such; check the base URL "
    "and any proxy in between, then report it with the request id.",
    "BusyError": "Nothing: retried. A retried submit may have created a task "
    "(`client.stats.ambiguous_submits` counts them).",
    "PathNotFoundError": "Check `base_url` (and `workflow_result_path`); "
    "`fto-async doctor` probes them.",
    "InvalidParameterError": "Fix the row's input (the message names it); other rows go on.",
    "ValidationError": "Fix the fields listed in `details`; other rows go on.",
    "ServiceError": "68300008 is retried by itself; the others are the platform's failures: "
    "rerun later, the journal resumes.",
    "FileSpecError": "Send a PNG or JPEG of at most 4,194,304 bytes.",
    "ServerError": "Nothing: retried with backoff; rerun later if it persists.",
    "OverloadedError": "Too many questions wait already (`max_waiting`): answer 429 with "
    "`Retry-After: retry_after`, or raise `max_waiting` if the QPS allows it.",
    "DeadlineExceededError": "Call again later: a task already paid is still polled and "
    "its report goes to the client's cache, so the next call costs no second task.",
}

#: The platform's own message per code (reference §8), where it published one.
MEANING: dict[int, str] = {
    67200000: "total limit set by the platform exceeded",
    67200001: "API call exceeds the total limit set by the platform",
    67200002: "call rate too fast: over the account's QPS",
    67200003: "access token expired, or wrong client id/secret, or client disabled",
    67200004: "no permission, or the API package quota is used up",
    67200005: "insufficient balance",
    67200006: "the client has expired",
    67200007: "exceeded the call limit (daily)",
    67200008: "`apikey` missing or not accepted",
    67200009: "`apikey` does not match the token",
    67200012: "illegal request",
    67200015: "grant type error (`/oauth/token`)",
    67200100: "gateway busy",
    67200101: "the API path does not exist",
    67200202: "apikey auth error (an `sk-` key not authenticated)",
    68300004: "invalid parameter (also an unknown or expired task id)",
    68300005: "search API failure",
    68300006: "analytic basic access error",
    68300007: "bad request",
    68300008: "service error, please try again later",
    68300010: "the file does not comply with the upload specifications",
}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    first = doc.split("\n\n", 1)[0].replace("\n", " ")
    return re.sub(r":\w+:`~?([^`]+)`", r"`\1`", first).replace("``", "`")


def render_errors() -> str:
    """The platform codes, the HTTP statuses, then every error class."""
    from fto_async import errors

    lines = [
        "### Platform codes",
        "",
        "| code | platform says | class | retryable | fatal | what to do |",
        "|---|---|---|---|---|---|",
    ]
    for code in sorted(errors.CODE_TABLE):
        exc = errors.error_from_code(code, "")
        name = type(exc).__name__
        meaning = MEANING.get(code, _summary(type(exc)))
        lines.append(f"| {code} | {meaning} | `{name}` | {_yes(exc.retryable)} | "
                     f"{_yes(exc.fatal)} | {ADVICE[name]} |")
    lines += [
        "",
        "### HTTP statuses without a platform code",
        "",
        "| HTTP status | class | retryable | fatal | what to do |",
        "|---|---|---|---|---|",
    ]
    statuses = [*sorted(getattr(errors, "_HTTP_TABLE", {})), 500, 502, 503]
    for status in statuses:
        exc = errors.error_from_code(None, "", http_status=status)
        name = type(exc).__name__
        lines.append(f"| {status} | `{name}` | {_yes(exc.retryable)} | {_yes(exc.fatal)} | "
                     f"{ADVICE[name]} |")
    lines += [
        "",
        "### Every error class",
        "",
        "`retryable`: the SDK retries it by itself. `fatal`: it stops a whole batch.",
        "",
        "| class | bases | retryable | fatal | when |",
        "|---|---|---|---|---|",
    ]
    classes = [getattr(errors, n) for n in errors.__all__]
    classes = [c for c in classes if isinstance(c, type) and issubclass(c, errors.FtoError)]
    import fto_async

    classes += [getattr(fto_async, n) for n in fto_async.__all__
                if isinstance(getattr(fto_async, n), type)
                and issubclass(getattr(fto_async, n), errors.FtoError)
                and getattr(fto_async, n) not in classes]
    for cls in classes:
        bases = ", ".join(f"`{b.__name__}`" for b in cls.__bases__)
        retryable = cls.retryable if isinstance(cls.retryable, bool) else "by code"
        retry_text = retryable if isinstance(retryable, str) else _yes(retryable)
        lines.append(f"| `{cls.__name__}` | {bases} | {retry_text} | {_yes(cls.fatal)} | "
                     f"{_summary(cls)} |")
    return "\n".join(lines) + "\n"


def _option_row(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(f"`{o}`" for o in action.option_strings)
        if action.nargs != 0:
            metavar = action.metavar or action.dest.upper()
            names += f" `{metavar}`"
    else:
        names = f"`{action.metavar or action.dest}`"
    text = (action.help or ("" if action.option_strings else "positional argument"))
    text = text.replace("|", "\\|").replace("%%", "%")
    if action.choices and not isinstance(action.choices, dict):
        text += " (one of " + ", ".join(f"`{c}`" for c in action.choices) + ")"
    if action.required and action.option_strings:
        text += " **Required.**"
    return f"| {names} | {text} |"


def _parser_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = [_option_row(a) for a in parser._actions if not isinstance(a, argparse._HelpAction)
            and not isinstance(a, argparse._SubParsersAction)]
    if not rows:
        return ["No options."]
    return ["| argument | meaning |", "|---|---|", *rows]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def emulator_parser() -> argparse.ArgumentParser:
    """A parser holding the emulator's options, as ``fto-async emulator`` reads them."""
    from fto_async.emulator._cli import add_arguments

    parser = argparse.ArgumentParser(prog="fto-async emulator")
    add_arguments(parser)
    return parser


def render_cli() -> str:
    """Every ``fto-async`` command with its usage line and flags."""
    from fto_async.cli import build_parser

    parser = build_parser()
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in action._choices_actions}
    lines: list[str] = []
    for name, sub in _subcommands(parser).items():
        if name == "emulator":
            sub = emulator_parser()
        usage = sub.format_usage().strip().removeprefix("usage: ")
        lines += [f"### `fto-async {name}`", "", helps.get(name) or "", "",
                  "```text", usage, "```", ""]
        lines += _parser_table(sub)
        if name == "emulator":
            lines += ["", "Its options are described on [the emulator page](emulator.md)."]
        lines.append("")
    return "\n".join(lines)


def render_emulator() -> str:
    """The emulator's options."""
    return "\n".join(_parser_table(emulator_parser())) + "\n"


def render_reference() -> str:
    """One mkdocstrings block per public name, in ``__all__``'s order."""
    import fto_async

    lines: list[str] = []
    for name in fto_async.__all__:
        lines += [f"::: fto_async.{name}", ""]
    return "\n".join(lines)


RENDERERS = {
    "errors": render_errors,
    "cli": render_cli,
    "emulator": render_emulator,
    "reference": render_reference,
}

_MARKER = re.compile(r"<!-- generated: (\w+) -->")


def expand(markdown: str) -> str:
    """Replace every marker in ``markdown`` with its generated text."""
    return _MARKER.sub(lambda m: RENDERERS[m.group(1)](), markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """The mkdocs hook: expand the markers of every page."""
    return expand(markdown)
