"""Optional dependencies: what only some commands need is an extra of the package
(``pip install 'rl-compress[EXTRA]'``); a command that needs a missing one says which, in one line."""

from __future__ import annotations

import importlib
from types import ModuleType

from rl_compress.core.errors import UserError

EXTRAS = {  # module -> (extra, what needs it)
    "stable_baselines3": ("bench", "the SB3 baselines of `rl-compress bench`"),
    "onnxruntime": ("onnx", "ONNX Runtime (the demo, `bench inference`)"),
    "ray": ("ray", "the ray backend of `rl-compress experiment`"),
    "captum": ("explain", "the captum maps of `bench localization`"),
    "scipy": ("explain", "the sanity check of `bench localization`"),
}


def require(module: str) -> ModuleType:
    """``module`` imported, or a ``UserError`` naming the extra that installs it."""
    extra, what = EXTRAS[module.split(".")[0]]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{what} needs {module.split('.')[0]}, which is not installed: "
                        f"pip install 'rl-compress[{extra}]'") from None
