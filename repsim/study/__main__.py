import sys

from repsim.study.cli import main

sys.exit(main())
