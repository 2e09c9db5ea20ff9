"""python -m bench: see the package docstring."""

import sys

from bench.cli import main

sys.exit(main())
