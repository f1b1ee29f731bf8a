"""The encoder-decoder ("skip") net of Ulyanov et al. and its fixed noise input. No training logic here."""

from __future__ import annotations

import torch
from torch import nn

from .config import NetConfig


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    # Reflection padding, as in the paper: zero padding leaves dark seams at the border of the restored image.
    pad = (kernel - 1) // 2
    layers: list[nn.Module] = [nn.ReflectionPad2d(pad)] if pad else []
    layers.append(nn.Conv2d(in_channels, out_channels, kernel, stride=stride, bias=True))
    return layers


def _conv_bn_act(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [*_conv(in_channels, out_channels, kernel, stride), nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2)]


class Level(nn.Module):
    """One scale: a stride-2 encoder branch that holds the coarser levels, an optional skip branch, a decoder."""

    def __init__(self, cfg: NetConfig, index: int, in_channels: int) -> None:
        super().__init__()
        down, up, skip = cfg.channels_down[index], cfg.channels_up[index], cfg.channels_skip[index]
        deeper: list[nn.Module] = [
            *_conv_bn_act(in_channels, down, cfg.kernel_down[index], stride=2),
            *_conv_bn_act(down, down, cfg.kernel_down[index]),
        ]
        if index + 1 < cfg.scales:
            deeper.append(Level(cfg, index + 1, down))
            deeper_channels = cfg.channels_up[index + 1]
        else:
            deeper_channels = down
        deeper.append(nn.Upsample(scale_factor=2, mode=cfg.upsample))
        self.deeper = nn.Sequential(*deeper)
        self.skip = nn.Sequential(*_conv_bn_act(in_channels, skip, cfg.kernel_skip)) if skip else None
        decoder = [
            nn.BatchNorm2d(skip + deeper_channels),
            *_conv_bn_act(skip + deeper_channels, up, cfg.kernel_up[index]),
        ]
        if cfg.extra_1x1_up:
            decoder += _conv_bn_act(up, up, 1)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deeper = self.deeper(x)
        if self.skip is not None:
            deeper = torch.cat([self.skip(x), deeper], dim=1)
        return self.decoder(deeper)


class SkipNet(nn.Module):
    """Maps the noise input ``z`` (1, input_depth, H', W') to an image (1, out_channels, H', W') in (0, 1).

    H' and W' must be multiples of ``cfg.size_multiple``; see :func:`padded_size`.
    """

    def __init__(self, cfg: NetConfig, out_channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.body = Level(cfg, 0, cfg.input_depth)
        self.head = nn.Sequential(*_conv(cfg.channels_up[0], out_channels, 1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))


def build_net(cfg: NetConfig, out_channels: int, *, seed: int) -> SkipNet:
    """Weights are drawn on the CPU from ``seed`` alone, so the same seed gives the same net on every device."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SkipNet(cfg, out_channels)


def padded_size(height: int, width: int, cfg: NetConfig) -> tuple[int, int]:
    m = cfg.size_multiple
    # Reflection padding needs the coarsest level to be wider than the pad of its convs.
    coarsest = (max(cfg.kernel_down) - 1) // 2 + 1
    return max(-(-height // m), coarsest) * m, max(-(-width // m), coarsest) * m


def make_input(cfg: NetConfig, height: int, width: int, *, generator: torch.Generator) -> torch.Tensor:
    """The fixed input z, U(0, 1) * input_scale, at the padded size; drawn on the CPU (CPU and CUDA RNGs differ)."""
    padded_h, padded_w = padded_size(height, width, cfg)
    z = torch.rand((1, cfg.input_depth, padded_h, padded_w), generator=generator)
    return z * cfg.input_scale


def crop_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centred H x W window of a padded output, so that both borders see the same amount of padding."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
