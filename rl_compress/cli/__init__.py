"""The ``rl-compress`` command line: the parser, one function per subcommand, and ``main``."""

from rl_compress.cli.main import main

__all__ = ["main"]
