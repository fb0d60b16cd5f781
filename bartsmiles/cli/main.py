"""The ``bartsmiles`` entry point: parse, call the handler, and turn failures into one line.

Every failure a user can cause -- a missing or unreadable file, a file that is not a checkpoint,
an unsafe checkpoint, text that is not UTF-8, a missing column, an invalid option, an output
folder that cannot be written -- ends in one line on stderr naming the file, row or column, and
exit status 2.  ``BARTSMILES_DEBUG=1`` shows the traceback instead.  An unexpected error (a bug)
also ends in one line, with exit status 1 and a request to report it.  ``bartsmiles-attribute``
uses the same handling (:func:`bartsmiles.errors.run_handler`).
"""
from __future__ import annotations

import sys
from typing import Sequence

from bartsmiles.cli.parser import build_parser
from bartsmiles.errors import run_handler

__all__ = ["main"]

def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fairseq_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, fairseq_args = argv[:i], argv[i + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.fairseq_args = fairseq_args
    args.command_line = " ".join(["bartsmiles", *argv, *(["--", *fairseq_args] if fairseq_args else [])])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_handler(f"bartsmiles {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
