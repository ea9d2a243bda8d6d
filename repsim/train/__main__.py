import sys

from repsim.train.cli import main

sys.exit(main())
