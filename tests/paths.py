"""Where the checkout and the real data are, for tests that run commands or read files."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REPSIM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
