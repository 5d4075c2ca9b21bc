"""`python -m r3kit ...` is the `r3kit` command (launchers start it this way: `torchrun ... -m r3kit run STAGE`)."""

import sys

from r3kit.cli import main

sys.exit(main())
