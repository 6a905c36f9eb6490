"""What every tools/*.py shares: the --fw argument and one-line errors with exit status 2.

Models are looked up by name in shared/models.py (get_spec); this module knows no model.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from shared.errors import UserError
from shared.frameworks import FRAMEWORKS

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_HOME": os.path.join(os.path.expanduser("~"), ".keras")}


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit 2 (argparse's own status for usage errors)."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def quiet_frameworks() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def main_wrapper(main: Callable[[list[str] | None], int]) -> Callable[[], None]:
    """Run main(argv); a UserError (or a ValueError from checks on user input) ends as one line, exit 2."""

    def run() -> None:
        quiet_frameworks()
        try:
            code = main(None)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        raise SystemExit(code or 0)

    return run


def check_fw(fw: str) -> str:
    if fw not in FRAMEWORKS:
        raise UserError(f"unknown --fw {fw!r}: expected keras or torch")
    return fw
