"""``python -m repsim.figures NAME [options]``: make figure NAME (``--help`` lists them)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from repsim.cli import command_prog, invoked_as, user_errors_exit_2
from repsim.figures import FIGURES, figure

EXAMPLES = """examples:
  {prog} cka_by_layer                       # early vs late runs under runs/
  {prog} rsa_by_layer --metric euclidean
  {prog} noise_robustness runs/ --out-dir out"""


@user_errors_exit_2
def main(argv: Sequence[str] | None = None) -> int:
    """Hand the arguments after NAME to ``repsim.figures.NAME.main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = command_prog("python -m repsim.figures")
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: {prog} NAME [options]   (NAME --help for its options)")
        print("\nfigures:")
        for name in FIGURES:
            print(f"  {name:<22} {(figure(name).__doc__ or name).splitlines()[0]}")
        print(f"\n{EXAMPLES.format(prog=prog)}")
        return 0
    if not argv:
        raise ValueError(f"name a figure: {', '.join(FIGURES)}")
    with invoked_as(f"{prog} {argv[0]}"):
        return figure(argv[0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
