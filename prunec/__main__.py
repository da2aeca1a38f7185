"""`python -m prunec` runs the command line."""

import sys

from prunec.cli import main

sys.exit(main())
