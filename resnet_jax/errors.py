"""How every command reports a mistake: one line on stderr, a status that says whose it was, no
traceback.

    error: config.train.steps=0: must be >= 1          (exit 2: the input is wrong; fix the command
    or config)
    error: checkpoint of step 40 not written ...       (exit 1: the run failed; what to do is in
    the line)

`--verbose` on the command line, or RESNET_JAX_VERBOSE=1, adds the traceback for whoever debugs.
Commands call `run_absl(main)` (absl flags) or wrap their argparse `main` in `report_errors`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

# exit statuses: bad input, failed run, stopped by a signal (resumable)
USAGE, FAILURE, INTERRUPTED = (
    2,
    1,
    3,
)
VERBOSE_ENV = "RESNET_JAX_VERBOSE"
HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")


class UserError(ValueError):
    """An input the user can fix (a config field, a path, a flag): reported as one line, exit
    status 2."""


class RunError(RuntimeError):
    """A run that failed for a reason outside the input (disk, another process): one line, exit
    status 1."""


class Interrupted(RuntimeError):
    """A signal stopped the run after it saved; rerunning the same command resumes. Exit status
    3."""


def verbose(argv: Sequence[str] | None = None) -> bool:
    argv = sys.argv if argv is None else argv
    return "--verbose" in argv or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def one_line(text: str) -> str:
    """The message of an error as one line: the last line of an embedded traceback, whitespace
    collapsed."""
    if "Traceback (most recent call last)" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        text = lines[-1] if lines else text
        text = re.sub(r"^\w+(\.\w+)*(Error|Exception): ", "", text.strip())
    return " ".join(text.split())


def fail(message: str, status: int = USAGE) -> NoReturn:
    """Print `error: message` on stderr (with the traceback under --verbose) and exit with
    `status`."""
    if verbose() and sys.exc_info()[0] is not None:
        traceback.print_exc()
    prefix = "stopped" if status == INTERRUPTED else "error"
    print(f"{prefix}: {one_line(message)}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def status_of(error: BaseException) -> int:
    """Exit status for an exception that reached the command's top."""
    if isinstance(error, Interrupted):
        return INTERRUPTED
    if type(error).__name__ == "UsageError":  # absl.app.UsageError: a missing or extra argument
        return USAGE
    if isinstance(error, (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return USAGE
    from resnet_jax.nn.shapes import ShapeError  # a model that cannot be built from the config

    return USAGE if isinstance(error, ShapeError) else FAILURE


def describe(error: BaseException) -> str:
    """What the user reads: the message of errors we raise; type and message of anything
    unexpected."""
    if (
        isinstance(error, (UserError, RunError, Interrupted, FloatingPointError))
        or status_of(error) == USAGE
    ):
        return str(error)
    if isinstance(error, OSError) and error.filename:
        return f"{error.strerror or error} ({error.filename})"
    hint = "" if verbose() else f" (rerun with --verbose or {VERBOSE_ENV}=1 for the traceback)"
    return f"{type(error).__name__}: {error}{hint}"


def report_errors(
    main: Callable[..., int | None], *, user_errors: tuple[type[BaseException], ...] = ()
) -> Callable[..., int | None]:
    """Wrap a command's main: any exception becomes one line on stderr and an exit status (see
    status_of); `user_errors` are the exception types that, from this command, mean bad input (exit
    2)."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt):
            raise
        except user_errors as error:
            fail(describe(error) if isinstance(error, OSError) else str(error), USAGE)
        # the top of a command: every error is reported
        except BaseException as error:
            fail(describe(error), status_of(error))

    return wrapped


def parse_absl_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing, with every mistake in a flag or a --config override as one line (exit
    2)."""
    from absl import flags

    argv = [a for a in argv if a != "--verbose"]
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    # A config file's warnings while it loads (ml_collections: "get_config() returned None") would
    # print before the one line that says what is wrong.
    absl_logger.setLevel(logging.ERROR)
    try:
        try:
            rest = flags.FLAGS(argv)
        except (
            SystemExit
        ) as done:  # absl prints --help and exits 1; a help that helped is a success
            asked = any(a.split("=")[0] in HELP_FLAGS for a in argv[1:])
            raise SystemExit(0 if asked and done.code == 1 else done.code) from None
        _check_config_file(argv)
        return rest
    except flags.UnrecognizedFlagError as error:
        fail(f"unknown flag --{error.flagname}: see --helpshort for this command's flags")
    except (AttributeError, KeyError) as error:  # ml_collections: a misspelt --config.GROUP.FIELD
        if not any(a.startswith("--config.") for a in argv):  # no override: the file's own error
            given = _config_flag(argv) or "?"
            fail(f"--config={given}: the config file raised {type(error).__name__}: {error}")
        fail(_misspelt_override(str(error), argv))
    except flags.Error as error:
        fail(_flag_error(str(error)))
    except Exception as error:  # a config file that raised while loading
        fail(f"--config: {one_line(str(error))}")
    finally:
        absl_logger.setLevel(level)


def _config_flag(argv: Sequence[str]) -> str | None:
    """The value of --config=... on the command line, or None."""
    return next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)


def _check_config_file(argv: Sequence[str]) -> None:
    """A config file flag that could not be read: config_flags swallows the error while parsing and
    raises it on the config's first use, so use it here, once, for every command with a config file
    flag."""
    from absl import flags

    config = flags.FLAGS.config if "config" in flags.FLAGS else None
    given = _config_flag(argv)
    if config is None and given:
        fail(f"--config={given}: its get_config returned None; it must return a ConfigDict")
    if config is None or isinstance(config, str):  # not given, or a plain path flag (sweep)
        return
    try:
        config.keys()
    except OSError as error:
        why = "no such config file" if "No such file" in str(error) else one_line(str(error))
        fail(f"--config={given}: {why}; give a path like configs/default.py[:variant]")
    except Exception as error:  # the config file's own code raised
        if isinstance(error, ValueError):  # a variant it refuses: its message says which
            fail(f"--config={given}: {one_line(str(error))}")
        fail(f"--config={given}: the config file raised {type(error).__name__}: {error}")


def _misspelt_override(text: str, argv: Sequence[str]) -> str:
    text = text.replace("\\n", "\n").replace("\\'", "'")
    names = re.findall(r"'([^'\n]+)'", text)
    suggestion = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
    wrong = suggestion[2] if suggestion else (names[0] if names else "?")
    arg = next(
        (
            a
            for a in argv
            if a.startswith("--config.") and re.search(rf"\.{re.escape(wrong)}(\.|=|$)", a)
        ),
        None,
    )
    where = arg.split("=")[0] if arg else f"--config...{wrong}"
    hint = (
        f"; did you mean '{suggestion[1]}'?"
        if suggestion
        else "; see the config file for its fields"
    )
    return f"{where}: the config has no field '{wrong}'{hint}"


def _flag_error(text: str) -> str:
    match = re.match(r"flag (--[^=\s:]+)(=(\S*))?: (.*)", text, re.S)
    if not match:
        return one_line(text)
    flag, value, why = match[1], match[3], one_line(match[4])
    why = re.sub(r"^Error whilst parsing config file: ?", "", why)
    return f"{flag}={value}: {why}" if value is not None else f"{flag}: {why}"


def hide_closed_loop_noise() -> None:
    """Drop the "Event loop is closed" tracebacks that orbax's writer threads print when a save
    fails or a damaged checkpoint is skipped (dozens of them, burying the one line that says what
    happened), and the
    "cannot schedule new futures after shutdown" one a thread may print as the interpreter exits
    after an error line; any other uncaught error prints as usual, and --verbose keeps these too.
    Every absl command has it."""
    import threading

    def noise(
        value,
    ) -> bool:  # and, as the interpreter exits after an error, their "cannot schedule new futures"
        return (
            isinstance(value, RuntimeError)
            and not verbose()
            and any(
                text in str(value)
                for text in ("Event loop is closed", "schedule new futures after shutdown")
            )
        )

    default_hook, default_thread_hook, default_unraisable = (
        sys.excepthook,
        threading.excepthook,
        sys.unraisablehook,
    )
    sys.excepthook = lambda t, v, tb: None if noise(v) else default_hook(t, v, tb)
    threading.excepthook = lambda args: None if noise(args.exc_value) else default_thread_hook(args)
    sys.unraisablehook = lambda args: None if noise(args.exc_value) else default_unraisable(args)


def no_arguments(argv: Sequence[str]) -> None:
    """For a command whose inputs are all flags: anything left after them is a mistake."""
    if len(argv) > 1:
        raise UserError(
            f"unexpected arguments {list(argv[1:])}: this command takes flags only, see --help"
        )


def run_absl(
    main: Callable[[list[str]], None], *, user_errors: tuple[type[BaseException], ...] = ()
) -> None:
    """absl.app.run with one-line errors for the flags and for whatever `main` raises."""
    from absl import app

    hide_closed_loop_noise()
    app.run(report_errors(main, user_errors=user_errors), flags_parser=parse_absl_flags)
