"""``python -m rl_compress.cli``: the same as the ``rl-compress`` console script."""

import sys

from rl_compress.cli.main import main

sys.exit(main())
