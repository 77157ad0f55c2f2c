"""`python -m gistscan`: the command line."""

import sys

from gistscan.cli import main

sys.exit(main())
