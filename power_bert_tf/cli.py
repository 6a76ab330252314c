"""Command-line plumbing shared by the absl drivers."""
from __future__ import annotations

import functools
import sys
from typing import Callable

from power_bert_tf.errors import PowerBertError


def exit_on_user_error(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    """Wraps an absl `main`: a user mistake prints one line and exits 1, no traceback."""

    @functools.wraps(main)
    def wrapped(argv: list[str]) -> None:
        try:
            main(argv)
        except (PowerBertError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(1)

    return wrapped
