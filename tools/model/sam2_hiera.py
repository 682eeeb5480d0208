"""SAM2's image encoder: the Hiera trunk and the FPN neck, written for torch 1.13 and TorchScript.

Names follow the published code (projects/unibiomed/hf/models/sam2.py: Hiera, MultiScaleBlock,
MultiScaleAttention, PatchEmbed, FpnNeck, ImageEncoder). Parameter-free parts are plain code: the
q-pooling MaxPool2d is F.max_pool2d, and the neck's sine position encoding (only used by the memory
attention of video tracking) is not computed.
"""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from sam2_heads import MLP, attend


def window_partition(x: torch.Tensor, ws: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """[B, H, W, C] -> [B * windows, ws, ws, C] (zero-padded to a multiple of ws), padded (H, W)."""
    b, h, w, c = x.shape
    pad_h = (ws - h % ws) % ws
    pad_w = (ws - w % ws) % ws
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, [0, 0, 0, pad_w, 0, pad_h])
    hp, wp = h + pad_h, w + pad_w
    x = x.reshape(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def window_unpartition(x: torch.Tensor, ws: int, pad_hw: Tuple[int, int],
                       hw: Tuple[int, int]) -> torch.Tensor:
    hp, wp = pad_hw
    h, w = hw
    b = x.shape[0] // ((hp // ws) * (wp // ws))
    x = x.reshape(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, hp, wp, -1)
    return x[:, :h, :w, :]


def pool_nhwc(x: torch.Tensor, stride: int) -> torch.Tensor:
    return F.max_pool2d(x.permute(0, 3, 1, 2), stride, stride).permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Attention over [B, H, W, C]; with q_stride > 0 the queries are max-pooled (stage change)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if self.q_stride > 0:
            q = pool_nhwc(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1], q.shape[2]
            q = q.reshape(b, h * w, self.num_heads, -1)
        x = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(x.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """Pre-norm block: (windowed or global) attention, GELU MLP; `proj` only where the width
    changes (nn.Identity, which has no parameters, elsewhere)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, mlp_ratio: float, q_stride: int,
                 window_size: int):
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size, self.q_stride = window_size, q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, gelu=True)
        self.proj = nn.Linear(dim, dim_out) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride > 0:
                shortcut = pool_nhwc(shortcut, self.q_stride)
        ws = self.window_size
        h, w = x.shape[1], x.shape[2]
        pad_hw = (h, w)
        if ws > 0:
            x, pad_hw = window_partition(x, ws)
        x = self.attn(x)
        if ws > 0:
            if self.q_stride > 0:
                ws = ws // self.q_stride
                h, w = shortcut.shape[1], shortcut.shape[2]
                pad_hw = (h + (ws - h % ws) % ws, w + (ws - w % ws) % ws)
            x = window_unpartition(x, ws, pad_hw, (h, w))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Hiera(nn.Module):
    """Hiera trunk; returns the output of each stage's last block as [B, C, H, W], finest first."""

    def __init__(self, cfg: dict):
        super().__init__()
        embed_dim, num_heads, stages = cfg["embed_dim"], cfg["num_heads"], cfg["stages"]
        ends = [sum(stages[:i + 1]) - 1 for i in range(len(stages))]
        q_pool_blocks = [e + 1 for e in ends[:-1]][:cfg["q_pool"]]
        self.stage_ends = ends
        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *cfg["window_pos_embed_bkg_spatial_size"]))
        w0 = cfg["window_spec"][0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, w0, w0))
        self.blocks = nn.ModuleList()
        stage, dim = 0, embed_dim
        for i in range(sum(stages)):
            window = 0 if i in cfg["global_att_blocks"] else cfg["window_spec"][stage]
            dim_out = dim
            if i - 1 in ends:
                dim_out = int(dim * cfg["dim_mul"])
                num_heads = int(num_heads * cfg["head_mul"])
                stage += 1
            q_stride = cfg["q_stride"] if i in q_pool_blocks else 0
            self.blocks.append(MultiScaleBlock(dim, dim_out, num_heads, cfg["mlp_ratio"], q_stride, window))
            dim = dim_out
        self.channel_list = [self.blocks[e].dim_out for e in ends[::-1]]

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        pe = F.interpolate(self.pos_embed.float(), size=(h, w), mode="bicubic", align_corners=False)
        win = self.pos_embed_window.float()
        pe = pe + win.tile([1, 1, h // win.shape[2], w // win.shape[3]])
        return pe.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._pos_embed(x.shape[1], x.shape[2]).to(x.dtype)
        outputs: List[torch.Tensor] = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


class ConvLevel(nn.Module):
    """One lateral 1x1 conv of the neck (`convs.N.conv`)."""

    def __init__(self, dim_in: int, d_model: int):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, d_model, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """convs[j] maps trunk level n-j (coarsest first) to d_model; levels in fpn_top_down_levels
    add the 2x nearest-upsampled coarser output."""

    def __init__(self, d_model: int, backbone_channel_list: List[int], fpn_top_down_levels: List[int]):
        super().__init__()
        self.convs = nn.ModuleList(ConvLevel(c, d_model) for c in backbone_channel_list)
        self.backbone_channel_list = list(backbone_channel_list)
        self.fpn_top_down_levels = list(fpn_top_down_levels)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        n = len(xs) - 1
        coarse_first: List[torch.Tensor] = []
        prev = xs[0]
        for j, conv in enumerate(self.convs):
            i = n - j
            lateral = conv(xs[i])
            if i in self.fpn_top_down_levels and j > 0:
                up = F.interpolate(prev.float(), scale_factor=2.0, mode="nearest")
                prev = lateral + up.to(lateral.dtype)
            else:
                prev = lateral
            coarse_first.append(prev)
        return coarse_first[::-1]


class ImageEncoder(nn.Module):
    """trunk + neck; drops the `scalp` coarsest levels. Returns d_model maps, finest first."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.trunk = Hiera(cfg)
        self.neck = FpnNeck(cfg["d_model"], self.trunk.channel_list, cfg["fpn_top_down_levels"])
        self.scalp = cfg["scalp"]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = self.neck(self.trunk(x))
        return feats[:len(feats) - self.scalp]
