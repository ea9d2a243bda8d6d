"""``python -m repsim COMMAND [options]``: the same as the ``repsim`` command."""

import sys

from repsim.commands import main

if __name__ == "__main__":
    sys.exit(main())
