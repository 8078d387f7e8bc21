"""The ``rl-compress`` command line.

User mistakes raise UserError anywhere below; ``main`` prints them as one line
``error: ...`` on stderr and exits with code 2 (1 for a write the disk refused), never with a
traceback. Output paths are checked before any work starts. A training run stopped by SIGTERM /
SIGINT checkpoints, says how to resume and exits with 128 + the signal number; any other command
stopped by a signal removes its temp files and exits the same way.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from rl_compress.cli.parser import build_parser
from rl_compress.core.errors import Stopped, StoppedRun, UserError, command_line_names
from rl_compress.core.signals import raise_stopped


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rl-compress`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    old = signal.signal(signal.SIGTERM, raise_stopped)
    try:
        with command_line_names():
            return int(args.func(args) or 0)
    except StoppedRun as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Stopped as e:
        print(f"error: stopped by {signal.Signals(e.signum).name}; nothing was left half-written", file=sys.stderr)
        return 128 + e.signum
    except BrokenPipeError:  # the reader went away (`rl-compress info A | head -1`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush cannot fail
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        print("error: interrupted (SIGINT); nothing was left half-written", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    sys.exit(main())
