"""How the `tiers` command tells an error: a foreseen one (``pipeline.errors``) as its
message and exit 1, an unforeseen one as one line with the ``--debug`` hint, and the
process's end without the interpreter's slow teardown."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading

import typer
from rich.console import Console
from rich.text import Text

from pipeline.errors import FORESEEN, classify

errors = Console(stderr=True)
debug = False  # --debug or TIERS_DEBUG=1: foreseen errors raise too (their traceback)


def fail_with(exc: BaseException) -> None:
    """A foreseen error's message and exit 1 (with --debug: the traceback)."""
    if debug:
        raise exc
    release(exc)
    fail(told(exc))


def release(exc: BaseException | None) -> None:
    """Drop the tracebacks of a reported error and its causes: their frames hold DuckDB
    objects that would otherwise outlive the interpreter's shutdown (nanobind then prints
    "leaked instance" warnings after the message)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


def fail(message: str, code: int = 1) -> None:
    print_error("error:", message)
    raise typer.Exit(code)


def print_error(label: str, message: str) -> None:
    """``label`` in red, then the message verbatim: no markup (``[lake]`` stays), and not
    wrapped, so that a log or a pipe gets the lines as the pipeline wrote them."""
    errors.print(Text.assemble((label, "bold red"), " ", message), soft_wrap=True, highlight=False)


def known_errors() -> tuple[type[BaseException], ...]:
    """The foreseen errors (pipeline.errors) a command tells as one message and exit 1;
    BackfillInterrupted, foreseen too, has an exit code of its own."""
    return tuple(kind for kind in FORESEEN if issubclass(kind, Exception))


def told(exc: BaseException) -> str:
    """A foreseen error's message and its notes (which step, whether it was recorded)."""
    from pipeline.pg import redact_text

    return redact_text("\n".join([str(exc), *getattr(exc, "__notes__", [])]))


def run_app(app: typer.Typer) -> None:
    """Run the command. An error the pipeline did not foresee (a database that cannot
    be reached, a full disk) ends in one message, not a traceback; ``--debug`` (anywhere
    on the command line) or TIERS_DEBUG=1 shows the traceback instead."""
    global debug
    debugging = debug = "--debug" in sys.argv[1:] or os.environ.get("TIERS_DEBUG") == "1"
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
    try:
        app()
    except SystemExit as exc:
        settle()
        exit_now(exc.code)
    except Exception as exc:
        settle()
        if debugging:
            raise
        from pipeline.faults import storage_fault

        fault = storage_fault(exc)
        if fault is not None:  # a full or read-only disk outside any step (a run's folder)
            notes = [] if fault is exc else getattr(exc, "__notes__", [])
            message = "\n".join([told(fault), *notes])
        elif classify(exc) is not None:  # foreseen, outside a step (e.g. `warehouse init`)
            message = told(exc)
        else:
            message = (
                f"{plain(exc)}\n(unexpected: run the command again with --debug for the "
                "traceback; what a step recorded is in the run's folder and in pipeline_run)"
            )
        release(exc)
    else:
        return
    print_error("error:", message)
    exit_now(1)  # outside the except block: the exit does not carry the error's frames


def exit_now(code: int | str | None) -> None:
    """End the process at once, with ``sys.exit``'s meaning of ``code``, once the output is
    flushed. Everything the command wrote is closed by then; what is skipped is the
    interpreter's teardown of the modules it imported, which takes most of a second after
    Great Expectations (longer than many a month's gates)."""
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


def settle() -> None:
    """Let the Great Expectations import that ``gates.warm_up`` started finish: a process
    that exits in the middle of it (a run that failed early) makes DuckDB's bindings print
    "leaked instance" warnings under the message."""
    for thread in threading.enumerate():
        if thread.name == "gx-import":
            thread.join(timeout=60)


def plain(exc: BaseException) -> str:
    """The error in one line or a few: its type when the message does not say it."""
    text = str(exc).strip() or type(exc).__name__
    from pipeline.pg import redact_text  # a connection error may quote a DSN

    text = text if ":" in text else f"{type(exc).__name__}: {text}"
    return redact_text("\n".join([text, *getattr(exc, "__notes__", [])]))
