"""``python -m repsim.figures NAME [options]``: make figure NAME (``--help`` lists them)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from repsim.cli import user_errors_exit_2
from repsim.figures import FIGURES, figure


@user_errors_exit_2
def main(argv: Sequence[str] | None = None) -> int:
    """Hand the arguments after NAME to ``repsim.figures.NAME.main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print("usage: python -m repsim.figures NAME [options]   (NAME --help for its options)")
        print("\nfigures:")
        for name in FIGURES:
            print(f"  {name:<22} {(figure(name).__doc__ or name).splitlines()[0]}")
        return 0
    if not argv:
        raise ValueError(f"name a figure: {', '.join(FIGURES)}")
    return figure(argv[0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
