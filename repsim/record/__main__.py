"""``python -m repsim.record``: see :mod:`repsim.record.cli`."""

import sys

from repsim.record.cli import main

if __name__ == "__main__":
    sys.exit(main())
