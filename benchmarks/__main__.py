"""`python -m maillage.benchmarks`: the whole harness, same as `maillage bench`."""

import sys

from .harness import main

sys.exit(main())
