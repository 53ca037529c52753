"""`python -m inferlab ...`: the `inferlab` command without its console script (a checkout on PYTHONPATH)."""

import sys

from inferlab.cli import main

sys.exit(main())
