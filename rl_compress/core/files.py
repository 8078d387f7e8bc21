"""Files written whole or not at all: atomic writes, one-generation writes of several files, sha256."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from rl_compress.core.errors import StorageError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename; a write the
    disk refuses raises StorageError (one line) and leaves no temp file and the old file as it was."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"{path}: could not write ({e.strerror or e}); it needs {len(data)} bytes") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _nbytes_text(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def write_generation(out: Path, files: list[tuple[str, Callable[[BinaryIO], None]]], what: str = "checkpoint") -> None:
    """Write several files of a run as one generation (``what``: a checkpoint, an agent): each is
    staged in full to a hidden temp file first; only when all are staged are they renamed into
    place, in the order given. A failure while staging removes every temp file and leaves the
    previous generation as it was, raising StorageError with the path and the bytes it needed."""
    staged: list[tuple[Path, Path]] = []
    try:
        for name, write in files:
            tmp = out / f".{name}.tmp"
            staged.append((tmp, out / name))
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        needed = sum(_staged_size(fn) for _, fn in files)
        reason = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        kept = "the previous checkpoint is intact" if what == "checkpoint" else "no file there was changed"
        raise StorageError(f"{staged[-1][1]}: could not write ({reason}); this {what} needs about "
                           f"{_nbytes_text(needed)}; {kept}") from None
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def _staged_size(write: Callable[[BinaryIO], None]) -> int:
    """Bytes a writer produces (its ``nbytes``), for the message of a failed write."""
    return int(getattr(write, "nbytes", 0))


def bytes_writer(data: bytes) -> Callable[[BinaryIO], None]:
    """A writer (for ``write_generation``) of ``data``, with its size as ``nbytes``."""

    def write(f: BinaryIO) -> None:
        f.write(data)

    write.nbytes = len(data)  # type: ignore[attr-defined]
    return write
