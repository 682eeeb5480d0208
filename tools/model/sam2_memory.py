"""SAM2's memory attention and memory encoder: structure only.

They hold parameters of the released checkpoint (which the converter loads strictly) but are used
only to track an object through a video; the node segments every slice from its own `[SEG]` prompt,
so no forward is written. Names follow projects/unibiomed/hf/models/sam2.py (MemoryAttention,
MemoryAttentionLayer, RoPEAttention, MemoryEncoder, MaskDownSampler, Fuser, CXBlock). Note: that
file's CXBlock calls its layer scale `g_weight` (third_parts/sam2 calls it `gamma`).
"""
import math

import torch
from torch import nn

from sam2_heads import Attention, LayerNorm2d


class MemoryAttentionLayer(nn.Module):
    def __init__(self, d_model: int, ffn: int, num_heads: int, downsample_rate: int, kv_in_dim: int):
        super().__init__()
        # RoPEAttention adds no parameters to Attention (its frequencies are not a buffer).
        self.self_attn = Attention(d_model, num_heads, downsample_rate)
        self.cross_attn_image = Attention(d_model, num_heads, downsample_rate, kv_in_dim)
        self.linear1 = nn.Linear(d_model, ffn)
        self.linear2 = nn.Linear(ffn, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)


class MemoryAttention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["d_model"]
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d, cfg["mem_attn_ffn"], cfg["mem_attn_heads"],
                                 cfg["mem_attn_downsample"], cfg["mem_dim"])
            for _ in range(cfg["mem_attn_layers"]))
        self.norm = nn.LayerNorm(d)


class MaskDownSampler(nn.Module):
    """(conv, LayerNorm2d, GELU) x n, each multiplying channels by stride**2, then a 1x1 conv."""

    def __init__(self, embed_dim: int, kernel_size: int, stride: int, padding: int, total_stride: int):
        super().__init__()
        n = int(round(math.log(total_stride) / math.log(stride)))
        if stride ** n != total_stride:
            raise ValueError(f"mask downsampler stride {stride} does not reach {total_stride}")
        layers = []
        c_in = 1
        for _ in range(n):
            c_out = c_in * stride * stride
            layers += [nn.Conv2d(c_in, c_out, kernel_size, stride, padding), LayerNorm2d(c_out), nn.GELU()]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)


class CXBlock(nn.Module):
    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        self.g_weight = nn.Parameter(1e-6 * torch.ones(dim))
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)


class Fuser(nn.Module):
    def __init__(self, dim: int, kernel_size: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim, kernel_size) for _ in range(num_layers))


class MemoryEncoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["d_model"]
        self.mask_downsampler = MaskDownSampler(d, cfg["mask_ds_kernel"], cfg["mask_ds_stride"],
                                                cfg["mask_ds_padding"], cfg["backbone_stride"])
        self.pix_feat_proj = nn.Conv2d(d, d, kernel_size=1)
        self.fuser = Fuser(d, cfg["fuser_kernel"], cfg["fuser_layers"])
        self.out_proj = nn.Conv2d(d, cfg["mem_dim"], kernel_size=1) if cfg["mem_dim"] != d else nn.Identity()
