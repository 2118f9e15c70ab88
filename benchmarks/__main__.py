"""`python -m maillage.benchmarks`: the whole harness, same as `maillage bench`."""

import sys

from maillage.benchmarks.harness import main

sys.exit(main())
