"""`python -m gistscan`: the command line."""

import os
import sys

try:
    from gistscan.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python loads the command line: no traceback
    print("gistscan: interrupted", file=sys.stderr, flush=True)
    os._exit(130)  # not sys.exit: see gistscan.cli.exit_interrupted

sys.exit(main())
