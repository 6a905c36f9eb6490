"""What every tools/*.py shares: the --fw argument and one-line errors with exit status 2.

Models are looked up by name in shared/models.py (get_spec); this module knows no model.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from shared.errors import UserError
from shared.frameworks import FRAMEWORKS, quiet_native_imports

QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "KERAS_HOME": os.path.join(os.path.expanduser("~"), ".keras"),
    "HF_HUB_VERBOSITY": "error",  # the hub client's retry warnings and notices
    "DATASETS_VERBOSITY": "error",
}


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit 2 (argparse's own status for usage errors)."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def quiet_frameworks() -> None:
    """Silence framework and hub logging before anything imports them (a user's own setting wins)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    quiet_native_imports()


def positive_int(text: str) -> int:
    """argparse type for counts that must be >= 1 (--threads): 0 or a negative number is a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {value}")
    return value


def main_wrapper(main: Callable[[list[str] | None], int]) -> Callable[[], None]:
    """Run main(argv); a UserError ends as one line on stderr and exit status 2 (or the error's own
    exit_code: 1 for a valid run that failed, such as a diverging training run).

    Only UserError is caught: every check of user input raises one (a ValueError from a model's
    Config.validate() is turned into one by shared.recipe.make_config). Anything else is a bug and keeps
    its traceback. Framework and hub logging is silenced first (quiet_frameworks), so that an error is
    the first line a user sees.
    """

    def run() -> None:
        quiet_frameworks()
        try:
            code = main(None)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(getattr(err, "exit_code", 2)) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        raise SystemExit(code or 0)

    return run


def check_fw(fw: str) -> str:
    if fw not in FRAMEWORKS:
        raise UserError(f"unknown --fw {fw!r}: expected keras or torch")
    return fw
