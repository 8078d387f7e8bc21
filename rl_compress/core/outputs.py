"""Where results go: output paths checked before any work starts, and output directories that are
never overwritten unless the user says so.

- ``check_output_file``: the file's kind is known (its suffix), it is not a directory, its folder
  exists and a real probe file can be created there (a read-only disk or a path under a file is
  refused at once, not after an hour of work).
- ``check_not_inputs``: an output is never an input, nor inside one, nor holds one.
- ``check_output_dir``: an agent or run directory that can be made and written (whether it may be
  claimed is ``core.rundir.claim_output_dir``'s to say).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from rl_compress.core.errors import UserError, arg_name
from rl_compress.core.rundir import RUN_FILES, holds_run


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def probe_writable(folder: Path, what: Path) -> None:
    """Create and remove a temp file in ``folder``; UserError naming ``what`` when that fails."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".probe."):
            pass
    except OSError as e:
        raise UserError(f"{what}: cannot write there ({e.strerror or e})") from None


def check_output_file(path: Path | str, suffixes: Sequence[str] = (), name: str = "out") -> Path:
    """Refuse an output file that cannot be written, with one line; returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: {arg_name(name)} is a directory, not a file")
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{path}: {arg_name(name)} must end in {' or '.join(suffixes)}")
    if not path.parent.exists():
        raise UserError(f"{path.parent}: no such directory")
    if not path.parent.is_dir():
        raise UserError(f"{path}: {path.parent} is not a directory")
    if path.name in RUN_FILES and holds_run(path.parent):
        raise UserError(f"{path}: {arg_name(name)} is a file of the agent in {path.parent}; choose another path")
    probe_writable(path.parent, path)
    return path


def check_not_inputs(out: Path | str, inputs: Sequence[Path | str | None], name: str = "out") -> None:
    """Refuse an output directory that is one of the ``inputs`` (a teacher, an --init-from agent, a
    source file), lies inside one, or holds one: writing there (--force) would destroy the input."""
    target = Path(out).resolve()
    for given in inputs:
        if not given or str(given).startswith("hf:"):
            continue
        source = Path(given).resolve()
        if target == source or source.is_relative_to(target) or target.is_relative_to(source):
            flag = arg_name(name)
            raise UserError(f"{out}: {flag} would overwrite its own input {given}; choose another {flag}")


def check_output_dir(out: Path | str, name: str = "out") -> Path:
    """Refuse an output directory that cannot be made or written (a file in its place, a path
    under a file, a read-only disk); returns it as a Path. Creates nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: {arg_name(name)} exists and is not a directory")
    base = _nearest_existing(out)
    if not base.is_dir():
        raise UserError(f"{out}: {arg_name(name)} cannot be made: {base} is a file, not a directory")
    probe_writable(base, out)
    return out
