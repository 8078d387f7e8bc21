"""Networks and the registry that rebuilds any of them from an agent card's "arch".

Every network takes the uint8 [B,4,84,84] stack and scales it by 1/255 inside, so that the
exported model and the agent see the same input. ``features`` returns the penultimate
representation (the teacher's 512-d layer) used by feature regression.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rl_compress.core.device import autocast
from rl_compress.core.errors import UserError, arg_name

ArchSpec = dict[str, Any]


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Spatial size after a valid (unpadded) convolution."""
    return (size - kernel) // stride + 1


def scaled_convs(conv: nn.Sequential, obs: torch.Tensor) -> torch.Tensor:
    """Run ``conv`` on uint8 pixels as if they were scaled to [0, 1]: its last activations."""
    return conv_activations(conv, obs)[-1]


def conv_layers(net: nn.Module) -> list[nn.Conv2d]:
    """The convolutions of ``net``, input first."""
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def conv_activations(conv: nn.Sequential, obs: torch.Tensor) -> list[torch.Tensor]:
    """The output of every ReLU of ``conv`` (conv, ReLU pairs) on uint8 pixels scaled to [0, 1]:
    one float32 tensor per layer, the last one the conv maps.

    The 1/255 is folded into the first convolution's weights (conv(x/255, W) = conv(x, W/255)),
    which saves an elementwise pass over the whole input batch; the result is the same.
    """
    first = conv[0]
    h = F.conv2d(obs.float(), first.weight * (1.0 / 255.0), first.bias, first.stride, first.padding)
    acts = []
    for m in itertools.islice(conv, 1, None):  # conv[1:] would build a new Sequential every call
        h = m(h)
        if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
            acts.append(h)
    return acts


class NatureDQN(nn.Module):
    """Mnih et al. 2015: conv 32@8x8/4, 64@4x4/2, 64@3x3/1, FC 512, one Q-value per action.

    ``quantiles`` > 1 gives the QR-DQN head (Dabney et al. 2018) laid out as in sb3-contrib
    ([B, quantiles, A]); the output is then the mean over quantiles, i.e. the Q-values.
    ``layer_norm`` puts a LayerNorm before every ReLU (over [C,H,W] after a convolution), as PQN's
    network does (Gallici et al. 2024); the layers and their shapes are otherwise the same.
    """

    def __init__(
        self, num_actions: int, channels: tuple[int, int, int] = (32, 64, 64), hidden: int = 512, quantiles: int = 1,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.quantiles = quantiles
        c3 = channels[2]
        self.conv = _convs(channels, layer_norm=layer_norm)
        side = conv_out(conv_out(conv_out(84, 8, 4), 4, 2), 3, 1)
        norm: list[nn.Module] = [nn.LayerNorm(hidden)] if layer_norm else []
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c3 * side * side, hidden), *norm, nn.ReLU())
        self.head = nn.Linear(hidden, num_actions * quantiles)

    def conv_maps(self, obs: torch.Tensor) -> torch.Tensor:
        """Last conv activations float32 [B,C,7,7] for a uint8 [B,4,84,84] batch."""
        return scaled_convs(self.conv, obs)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """The penultimate (hidden) layer for a uint8 [B,4,84,84] batch."""
        return self.fc(self.conv_maps(obs))

    def from_features(self, h: torch.Tensor) -> torch.Tensor:
        """Q-values [B,A] from the hidden layer (the mean over quantiles for a QR-DQN head)."""
        out = self.head(h)
        if self.quantiles > 1:
            out = out.view(-1, self.quantiles, self.num_actions).mean(1)
        return out

    def from_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """Outputs [B,A] from last conv activations (for Grad-CAM)."""
        return self.from_features(self.fc(maps))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values float32 [B,A] for a uint8 [B,4,84,84] batch."""
        return self.from_maps(self.conv_maps(obs))


def _convs(channels: tuple[int, int, int], wide: int = 0, wide_channels: int = 0,
           layer_norm: bool = False) -> nn.Sequential:
    """The Nature-DQN conv geometry (8x8/4, 4x4/2, 3x3/1, ReLU) with the given widths; ``wide``
    > 0 appends a fourth convolution ``wide`` x ``wide`` (stride 1, width ``wide_channels``, by
    default ``channels[2]``); ``layer_norm`` puts a LayerNorm over [C,H,W] before each ReLU."""
    layers: list[nn.Module] = []
    size, c_in = 84, 4
    for c_out, (kernel, stride) in zip(channels, ((8, 4), (4, 2), (3, 1))):
        size = conv_out(size, kernel, stride)
        layers.append(nn.Conv2d(c_in, c_out, kernel, stride=stride))
        if layer_norm:
            layers.append(nn.LayerNorm([c_out, size, size]))
        layers.append(nn.ReLU())
        c_in = c_out
    if wide > 0:
        layers += [nn.Conv2d(channels[2], wide_channels or channels[2], wide, stride=1), nn.ReLU()]
    return nn.Sequential(*layers)


class GMPStudent(nn.Module):
    """Tiny student: the teacher's conv geometry, a global max pool over the 7x7 map, then
    a linear head (optionally after one hidden layer). Outputs logits (or Q-values when
    trained by DQN). ``conv_maps`` gives the last conv activations for localization.

    ``wide`` = K > 0 adds a K x K convolution on the 7x7 map before the pool, so that each
    pooled cell sees 36 + 8(K-1) input pixels instead of 36 (the whole 84-pixel frame at K = 7):
    without padding a 36-pixel cell never sees a far ball and the paddle together; its width is
    ``wide_channels`` (default: ``channels[2]``).
    """

    def __init__(
        self, num_actions: int, channels: tuple[int, int, int] = (16, 16, 16), hidden: int = 0, wide: int = 0,
        wide_channels: int = 0,
    ) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.conv = _convs(channels, wide, wide_channels)
        width = (wide_channels or channels[2]) if wide else channels[2]
        self.hidden = nn.Sequential(nn.Linear(width, hidden), nn.ReLU()) if hidden > 0 else nn.Identity()
        self.head = nn.Linear(hidden if hidden > 0 else width, num_actions)

    def conv_maps(self, obs: torch.Tensor) -> torch.Tensor:
        """Last conv activations float32 [B,C,S,S] (S = 7, or 8 - K with a K x K fourth conv)."""
        return scaled_convs(self.conv, obs)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """The pooled (or hidden) vector that feeds the head."""
        return self.hidden(self.conv_maps(obs).amax(dim=(2, 3)))

    def from_features(self, h: torch.Tensor) -> torch.Tensor:
        """Logits [B,A] from ``features``."""
        return self.head(h)

    def from_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """Logits [B,A] from last conv activations."""
        return self.head(self.hidden(maps.amax(dim=(2, 3))))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits float32 [B,A]."""
        return self.head(self.features(obs))


class FlatStudent(nn.Module):
    """Policy Distillation's student: the same convs, flattened, one FC layer, then the head."""

    def __init__(self, num_actions: int, channels: tuple[int, int, int] = (16, 16, 16), hidden: int = 128) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.conv = _convs(channels)
        side = conv_out(conv_out(conv_out(84, 8, 4), 4, 2), 3, 1)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(channels[2] * side * side, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_actions)

    def conv_maps(self, obs: torch.Tensor) -> torch.Tensor:
        """Last conv activations float32 [B,C,7,7]."""
        return scaled_convs(self.conv, obs)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """The hidden layer that feeds the head."""
        return self.fc(self.conv_maps(obs))

    def from_features(self, h: torch.Tensor) -> torch.Tensor:
        """Logits [B,A] from ``features``."""
        return self.head(h)

    def from_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """Logits [B,A] from last conv activations."""
        return self.head(self.fc(maps))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits float32 [B,A]."""
        return self.head(self.features(obs))


SPEC_FORMS = (
    "gmp<C>[-<C2>-<C3>[-<C4>]][-w<K>][-h<H>] (-w<K>: a fourth KxK conv before the pool, K 2-7, width C4 "
    "or C3) | "
    "flat<C>[-<C2>-<C3>]-fc<H>"
)
_GMP = re.compile(r"^gmp(\d+)(?:-(\d+)-(\d+)(?:-(\d+))?)?(?:-w(\d+))?(?:-h(\d+))?$")
_FLAT = re.compile(r"^flat(\d+)(?:-(\d+)-(\d+))?-fc(\d+)$")


def parse_spec(spec: str) -> ArchSpec:
    """Turn a student spec (``gmp16``, ``gmp16-h64``, ``gmp8-16-32``, ``gmp15-w5``, ``gmp14-15-22-19-w5``,
    ``flat16-fc128``) into an arch. The arch carries "wide" only when the spec has ``-w<K>``, and
    "wide_channels" only when it gives a fourth width, so older cards match.

    Raises UserError showing the valid forms for anything else.
    """
    text = spec.strip().lower()
    for name, pattern in (("gmp", _GMP), ("flat", _FLAT)):
        m = pattern.match(text)
        if m:
            if name == "gmp":
                c1, c2, c3, c4, w, h = m.groups()
            else:
                (c1, c2, c3, h), c4, w = m.groups(), None, None
            if c4 is not None and w is None:
                break  # a fourth width needs the fourth conv
            channels = [int(c1), int(c2 or c1), int(c3 or c1)] + ([int(c4)] if c4 is not None else [])
            hidden, wide = int(h or 0), int(w or 0)
            if min(channels) < 1 or (name == "flat" and hidden < 1) or hidden > 65536 or max(channels) > 4096:
                break
            if w is not None and not 2 <= wide <= 7:
                break
            arch: ArchSpec = {"name": name, "spec": text, "channels": channels[:3], "hidden": hidden}
            return arch | ({"wide": wide} if wide else {}) | ({"wide_channels": channels[3]} if c4 else {})
    raise UserError(f"invalid student spec {spec!r}; valid forms: {SPEC_FORMS} (e.g. gmp16, gmp16-h64, flat16-fc128)")


def receptive_field(net: nn.Module) -> tuple[int, int, int]:
    """(size, stride, offset) in input pixels of one cell of the last conv map, computed
    from the network's convolutions: cell i covers input [offset + i*stride, ... + size)."""
    size, jump, start = 1, 1, 0
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
            size += (k - 1) * jump
            start -= p * jump
            jump *= s
    return size, jump, start


def _build_student(arch: ArchSpec, num_actions: int) -> nn.Module:
    channels = tuple(int(c) for c in arch.get("channels", ()))
    if len(channels) != 3 or min(channels) < 1:
        raise UserError(f"{arch.get('name')} arch needs 3 positive channel widths, got {list(channels)}")
    hidden = int(arch.get("hidden", 0))
    if arch["name"] == "flat":
        return FlatStudent(num_actions, channels, hidden)  # type: ignore[arg-type]
    wide = int(arch.get("wide", 0))
    if not 0 <= wide <= 7 or wide == 1:
        raise UserError(f"gmp arch: wide must be 0 or 2-7, got {wide}")
    wide_channels = int(arch.get("wide_channels", 0))
    if wide_channels < 0 or (wide_channels and not wide):
        raise UserError(f"gmp arch: wide_channels {wide_channels} needs a wide conv")
    return GMPStudent(num_actions, channels, hidden, wide, wide_channels)  # type: ignore[arg-type]


def _build_nature_dqn(arch: ArchSpec, num_actions: int) -> nn.Module:
    channels = tuple(int(c) for c in arch.get("channels", (32, 64, 64)))
    if len(channels) != 3:
        raise UserError(f"nature_dqn arch needs 3 channel widths, got {list(channels)}")
    quantiles = int(arch.get("quantiles", 1))
    norm = arch.get("norm")
    if norm not in (None, "layernorm"):
        raise UserError(f"nature_dqn arch: norm must be absent or 'layernorm', got {norm!r}")
    return NatureDQN(num_actions, channels, int(arch.get("hidden", 512)), quantiles,  # type: ignore[arg-type]
                     layer_norm=norm == "layernorm")


BUILDERS: dict[str, Callable[[ArchSpec, int], nn.Module]] = {
    "nature_dqn": _build_nature_dqn,
    "gmp": _build_student,
    "flat": _build_student,
}


def teacher_arch(layer_norm: bool = False) -> ArchSpec:
    """The arch card entry of the Nature-DQN teacher (with ``layer_norm``: PQN's, a LayerNorm before
    every ReLU; the entry then carries ``"norm": "layernorm"``, so older cards match)."""
    arch: ArchSpec = {"name": "nature_dqn", "channels": [32, 64, 64], "hidden": 512}
    return arch | ({"norm": "layernorm"} if layer_norm else {})


ARCH_BOUNDS = {"channels": 4096, "hidden": 65536, "quantiles": 1024, "wide": 7, "wide_channels": 4096}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_arch_sizes(arch: ArchSpec) -> None:
    """Refuse an arch entry whose sizes are not integers in their range (a card asking torch for
    terabytes, or for a negative width) before a single tensor is made."""
    channels = arch.get("channels", [])
    if not isinstance(channels, list) or not all(_is_int(c) and 1 <= c <= ARCH_BOUNDS["channels"] for c in channels):
        raise UserError(f"arch channels must be a list of integers from 1 to {ARCH_BOUNDS['channels']}, "
                        f"got {channels!r}")
    for key, high in ARCH_BOUNDS.items():
        if key != "channels" and key in arch and not (_is_int(arch[key]) and 0 <= arch[key] <= high):
            raise UserError(f"arch {key} must be an integer from 0 to {high}, got {arch[key]!r}")


def build_network(arch: ArchSpec, num_actions: int) -> nn.Module:
    """Rebuild a network from an agent card's "arch" entry; UserError for unknown names and for
    sizes out of range."""
    name = arch.get("name") if isinstance(arch, dict) else None
    if name not in BUILDERS:
        raise UserError(f"unknown network arch {name!r}; known: {', '.join(sorted(BUILDERS))}")
    if num_actions < 1:
        raise UserError(f"num_actions must be >= 1, got {num_actions}")
    check_arch_sizes(arch)
    return BUILDERS[name](arch, num_actions)


def count_params(net: nn.Module) -> int:
    """Number of parameters (frozen ones too: a teacher or a moving average is as large as it is)."""
    return sum(p.numel() for p in net.parameters())


def forward_macs(net: nn.Module) -> tuple[int, int]:
    """Multiply-accumulates of one forward pass on one 4x84x84 frame: (in the convolutions, in the
    linear layers after them), from the layers' shapes (the convolutions run in sequence)."""
    conv, linear, size = 0, 0, 84
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            k, s, p, d = m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0]
            size = (size + 2 * p - d * (k - 1) - 1) // s + 1
            conv += size * size * m.out_channels * m.in_channels * k * k // m.groups
        elif isinstance(m, nn.Linear):
            linear += m.in_features * m.out_features
    return conv, linear


def bf16_autocast(enabled: bool, device: torch.device | None = None) -> Any:
    """Autocast to bfloat16 (convolutions and matmuls) on ``device``'s type (the CPU by
    default), or a no-op context."""
    return autocast(device or torch.device("cpu"), enabled)


PRECISIONS = ("fp32", "bf16", "auto")
BF16_AUTO_HELP = "bf16 on devices with bfloat16 units: CPUs with AMX or AVX-512 BF16, CUDA GPUs from Ampere on"


def check_precision(precision: str) -> None:
    """Refuse a --precision other than fp32, bf16 or auto with one line."""
    if precision not in PRECISIONS:
        raise UserError(f"{arg_name('precision')} must be fp32, bf16 or auto, got {precision!r}")


def bf16_enabled(precision: str, device: torch.device | None = None) -> bool:
    """Whether a run at ``precision`` on ``device`` uses bfloat16 autocast: ``bf16`` always (with a
    warning where the device makes it slower), ``auto`` where the device has bfloat16 units (a CUDA
    GPU of compute capability 8 or more, a CPU with AMX or AVX-512 BF16), ``fp32`` never."""
    if precision == "fp32":
        return False
    fast = bf16_is_fast(device)
    if precision == "auto":
        return fast
    if not fast:
        warnings.warn(f"{arg_name('precision')} bf16 on a device without bfloat16 units (a CPU without AMX or "
                      "AVX-512 BF16, a GPU before Ampere): updates will be slower than fp32", stacklevel=3)
    return True


def bf16_is_fast(device: torch.device | None = None) -> bool:
    """Whether ``device`` (the CPU by default) computes bfloat16 fast: a CUDA GPU of compute
    capability 8 or more, a CPU with bfloat16 matrix units (AMX) or AVX-512 BF16 instructions."""
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without the probes
        return False
