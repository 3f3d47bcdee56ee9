"""``python -m den.cli``: the same as the ``den`` command."""

import sys

from den.cli import main

sys.exit(main())
