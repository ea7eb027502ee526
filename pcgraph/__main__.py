"""``python -m pcgraph …`` (and ``torchrun … -m pcgraph train …``): the command line."""

import sys

from pcgraph.cli import main

sys.exit(main())
