"""SAM2's shared layers, prompt encoder and mask decoder, written for torch 1.13 and TorchScript.

Module and parameter names follow the published SAM2 code as UniBiomed instantiates it
(projects/unibiomed/hf/models/sam2.py: PromptEncoder, MaskDecoder, TwoWayTransformer, Attention,
MLP, LayerNorm2d), so a state dict loads strictly. Inference only: no dropout, no drop path.
"""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over [..., N, d] tensors; the softmax runs in float32 so fp16/bf16
    weights cannot overflow it (torch 1.13 has no scaled_dot_product_attention)."""
    scores = torch.matmul(q * (float(q.shape[-1]) ** -0.5), k.transpose(-2, -1))
    return torch.matmul(torch.softmax(scores.float(), dim=-1).to(v.dtype), v)


class MLP(nn.Module):
    """`layers.N` Linear layers with ReLU (or GELU) between them, optional sigmoid at the end."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 gelu: bool = False, sigmoid_output: bool = False):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.num_layers = num_layers
        self.gelu = gelu
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = F.gelu(x) if self.gelu else F.relu(x)
        if self.sigmoid_output:
            x = torch.sigmoid(x)
        return x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of [B, C, H, W]."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Attention(nn.Module):
    """Multi-head attention with q/k/v projected to embedding_dim // downsample_rate."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1,
                 kv_in_dim: int = 0):
        super().__init__()
        kv_dim = kv_in_dim if kv_in_dim > 0 else embedding_dim
        internal = embedding_dim // downsample_rate
        if internal % num_heads != 0:
            raise ValueError(f"{num_heads} heads do not divide the attention width {internal}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, internal)
        self.k_proj = nn.Linear(kv_dim, internal)
        self.v_proj = nn.Linear(kv_dim, internal)
        self.out_proj = nn.Linear(internal, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = attend(self._heads(self.q_proj(q)), self._heads(self.k_proj(k)),
                     self._heads(self.v_proj(v)))
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token-to-image, MLP, image-to-token (SAM's decoder block)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample_rate: int,
                 skip_first_layer_pe: bool):
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, 2)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys + key_pe, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int, dim: int, num_heads: int, mlp_dim: int, downsample_rate: int):
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(dim, num_heads, mlp_dim, downsample_rate, i == 0)
            for i in range(depth))
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample_rate)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor,
                tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """image, image_pe [B, C, H, W]; tokens [B, N, C] -> (tokens, image as [B, HW, C])."""
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features; the Gaussian matrix is a buffer stored in the checkpoint."""

    def __init__(self, num_pos_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def dense(self, h: int, w: int) -> torch.Tensor:
        """[1, 2F, h, w] encoding of the pixel-centre grid, float32."""
        g = self.positional_encoding_gaussian_matrix.float()
        ys = (torch.arange(h, device=g.device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=g.device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        coords = 2.0 * 3.141592653589793 * torch.matmul(2.0 * grid - 1.0, g)
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1)[None]


class PromptEncoder(nn.Module):
    """SAM's prompt encoder. Only what a language prompt needs is used at run time:
    `not_a_point_embed` (the padding points), `no_mask_embed` (dense) and `pe_layer` (image PE);
    point/box embeddings and mask downscaling exist for the checkpoint."""

    def __init__(self, embed_dim: int, mask_in_chans: int):
        super().__init__()
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4), nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans), nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, embed_dim)


class MaskDecoder(nn.Module):
    """SAM2's mask decoder with high-resolution features and object-score token (the hiera-large
    settings UniBiomed uses: use_high_res_features and pred_obj_scores are required)."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_dim: int, downsample_rate: int,
                 num_multimask_outputs: int, iou_head_depth: int, iou_head_hidden_dim: int,
                 pred_obj_scores_mlp: bool):
        super().__init__()
        self.transformer = TwoWayTransformer(depth, dim, num_heads, mlp_dim, downsample_rate)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2), LayerNorm2d(dim // 4),
            nn.GELU(), nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2), nn.GELU())
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, iou_head_hidden_dim, self.num_mask_tokens,
                                       iou_head_depth, sigmoid_output=True)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3) if pred_obj_scores_mlp else nn.Linear(dim, 1)

    def predict(self, image: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor, feat_s0: torch.Tensor,
                feat_s1: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """All mask tokens: masks [B, 1 + num_multimask_outputs, 4H, 4W] logits and predicted IoU
        [B, 1 + num_multimask_outputs] (sigmoid). image [B,C,H,W], image_pe [1,C,H,W], sparse
        [B,N,C], dense broadcastable to image, feat_s0 [B,C/8,4H,4W], feat_s1 [B,C/4,2H,2W]."""
        b, c, h, w = image.shape
        out_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight,
                                self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1), sparse], dim=1)
        hs, src = self.transformer(image + dense, image_pe.expand(b, -1, -1, -1), tokens)
        src = src.transpose(1, 2).reshape(b, c, h, w)
        up = self.output_upscaling
        x = F.gelu(up[1](up[0](src) + feat_s1))
        x = F.gelu(up[3](x) + feat_s0)
        hyper: List[torch.Tensor] = []
        for i, mlp in enumerate(self.output_hypernetworks_mlps):
            hyper.append(mlp(hs[:, 2 + i, :]))
        bx, cx, hx, wx = x.shape
        masks = torch.matmul(torch.stack(hyper, dim=1), x.reshape(bx, cx, hx * wx))
        return masks.reshape(bx, -1, hx, wx), self.iou_prediction_head(hs[:, 1, :])
