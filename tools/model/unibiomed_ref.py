"""Reference modules of the released UniBiomed model (Sa2VA-style `sa2va_chat` checkpoint): InternViT,
the InternVL projector `mlp1`, a Qwen2 causal LM, `text_hidden_fcs` and the SAM2 grounding encoder
(tools/model/sam2_ref.py). Written for this project from the module tree of the published code
(Luffy03/UniBiomed projects/unibiomed/hf/models/modeling_sa2va_chat.py, modeling_intern_vit.py,
configuration_*.py; Qwen2 as in transformers' Qwen2ForCausalLM). Parameter names and shapes equal the
checkpoint's; every size comes from config.json. Modules are created uninitialized: their weights
always come from a checkpoint (convert_unibiomed.py) or from make_synthetic_unibiomed.py.

The export wrappers (VisionEncoderPart, LanguageModelPart, SegProjectionPart) implement bundle format 2
(docs/model-bundle.md): each casts its floating inputs to the dtype of its own weights and returns
float32. All modules are torch.jit.script-able on torch 1.13 (no scaled_dot_product_attention)."""
import contextlib
import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

_INIT_FUNCS = ["uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "xavier_uniform_",
               "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_"]


@contextlib.contextmanager
def uninitialized():
    """Builds modules without running torch.nn.init: large weights stay untouched (no RSS) until a
    checkpoint's tensors replace them."""
    saved = {n: getattr(nn.init, n) for n in _INIT_FUNCS}
    for n in _INIT_FUNCS:
        setattr(nn.init, n, lambda t, *a, **k: t)
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)


def activation(name: str) -> nn.Module:
    acts = {"gelu": lambda: nn.GELU(), "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
            "gelu_new": lambda: nn.GELU(approximate="tanh"), "silu": lambda: nn.SiLU(), "relu": lambda: nn.ReLU()}
    if name not in acts:
        raise ValueError(f"unsupported activation {name!r}")
    return acts[name]()


class RMSNorm(nn.Module):
    """InternRMSNorm / Qwen2RMSNorm: normalised in float32, scaled in the input dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


# ---------------------------------------------------------------- configuration (config.json -> sizes)
VISION_DEFAULTS = dict(num_channels=3, patch_size=14, image_size=224, qkv_bias=False, hidden_size=3200,
                       num_attention_heads=25, intermediate_size=12800, qk_normalization=True,
                       num_hidden_layers=48, hidden_act="gelu", norm_type="rms_norm", layer_norm_eps=1e-6)
LLM_DEFAULTS = dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=None, hidden_act="silu", rms_norm_eps=1e-6,
                    max_position_embeddings=32768, rope_theta=10000.0, rope_scaling=None,
                    tie_word_embeddings=False, use_sliding_window=False)
TOP_DEFAULTS = dict(select_layer=-1, force_image_size=None, downsample_ratio=0.5, ps_version="v1",
                    min_dynamic_patch=1, max_dynamic_patch=6, use_thumbnail=False, template=None)


class Cfg(dict):
    """A dict whose keys read as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def vision_config(config: dict) -> Cfg:
    c = Cfg(VISION_DEFAULTS, **config.get("vision_config", {}))
    if c.norm_type not in ("rms_norm", "layer_norm"):
        raise ValueError(f"vision_config.norm_type {c.norm_type!r} is not supported")
    return c


def llm_config(config: dict) -> Cfg:
    c = Cfg(LLM_DEFAULTS, **config.get("llm_config", {}))
    arch = (c.get("architectures") or ["?"])[0]
    if arch != "Qwen2ForCausalLM":
        raise ValueError(f"llm_config.architectures {arch!r}: only Qwen2ForCausalLM is supported")
    if c.rope_scaling:
        raise ValueError("llm_config.rope_scaling is not supported")
    if c.use_sliding_window:
        raise ValueError("llm_config.use_sliding_window is not supported")
    if c.num_key_value_heads is None:
        c["num_key_value_heads"] = c.num_attention_heads
    c["head_dim"] = c.hidden_size // c.num_attention_heads
    return c


def top_config(config: dict) -> Cfg:
    c = Cfg(TOP_DEFAULTS, **{k: config[k] for k in TOP_DEFAULTS if k in config})
    v = vision_config(config)
    c["tile_size"] = c.force_image_size or v.image_size
    grid = c.tile_size // v.patch_size
    c["tokens_per_tile"] = int(grid * grid * c.downsample_ratio ** 2)
    return c


# ---------------------------------------------------------------- InternViT (InternVisionModel)
class InternVisionEmbeddings(nn.Module):
    def __init__(self, c: Cfg):
        super().__init__()
        self.grid = c.image_size // c.patch_size
        self.class_embedding = nn.Parameter(torch.empty(1, 1, c.hidden_size))
        self.patch_embedding = nn.Conv2d(3, c.hidden_size, kernel_size=c.patch_size, stride=c.patch_size)
        self.position_embedding = nn.Parameter(torch.empty(1, self.grid * self.grid + 1, c.hidden_size))

    def forward(self, pixel_values):
        dt = self.patch_embedding.weight.dtype
        x = self.patch_embedding(pixel_values)
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        x = torch.cat([self.class_embedding.expand(b, 1, -1).to(dt), x.flatten(2).transpose(1, 2)], dim=1)
        pos = self.position_embedding
        grid = pos[:, 1:, :].float().reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        grid = grid.reshape(1, -1, h * w).permute(0, 2, 1).to(pos.dtype)
        return x + torch.cat([pos[:, :1, :], grid], dim=1).to(dt)


class InternAttention(nn.Module):
    qk_normalization: torch.jit.Final[bool]

    def __init__(self, c: Cfg):
        super().__init__()
        self.num_heads = c.num_attention_heads
        self.scale = (c.hidden_size // c.num_attention_heads) ** -0.5
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size, bias=bool(c.qkv_bias))
        self.qk_normalization = bool(c.qk_normalization)
        if self.qk_normalization:
            self.q_norm = RMSNorm(c.hidden_size, c.layer_norm_eps)
            self.k_norm = RMSNorm(c.hidden_size, c.layer_norm_eps)
        self.proj = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x):
        b, n, ch = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, ch // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.qk_normalization:
            hd = ch // self.num_heads
            q = self.q_norm(q.transpose(1, 2).flatten(-2, -1)).view(b, n, self.num_heads, hd).transpose(1, 2)
            k = self.k_norm(k.transpose(1, 2).flatten(-2, -1)).view(b, n, self.num_heads, hd).transpose(1, 2)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, ch))


class InternMLP(nn.Module):
    def __init__(self, c: Cfg):
        super().__init__()
        self.act = activation(c.hidden_act)
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _norm(c: Cfg) -> nn.Module:
    if c.norm_type == "rms_norm":
        return RMSNorm(c.hidden_size, c.layer_norm_eps)
    return nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class InternVisionEncoderLayer(nn.Module):
    def __init__(self, c: Cfg):
        super().__init__()
        self.attn = InternAttention(c)
        self.mlp = InternMLP(c)
        self.norm1 = _norm(c)
        self.norm2 = _norm(c)
        self.ls1 = nn.Parameter(torch.empty(c.hidden_size))
        self.ls2 = nn.Parameter(torch.empty(c.hidden_size))

    def forward(self, x):
        x = x + self.attn(self.norm1(x)) * self.ls1
        return x + self.mlp(self.norm2(x)) * self.ls2


class InternVisionEncoder(nn.Module):
    def __init__(self, c: Cfg):
        super().__init__()
        self.layers = nn.ModuleList([InternVisionEncoderLayer(c) for _ in range(c.num_hidden_layers)])


class InternVisionModel(nn.Module):
    """`forward(pixel_values, depth)`: the hidden states after the first `depth` encoder layers
    (HF hidden_states[depth]; hidden_states[0] is the embeddings' output). No final norm."""

    def __init__(self, c: Cfg):
        super().__init__()
        self.embeddings = InternVisionEmbeddings(c)
        self.encoder = InternVisionEncoder(c)

    def forward(self, pixel_values, depth: int):
        x = self.embeddings(pixel_values)
        for i, layer in enumerate(self.encoder.layers):
            if i < depth:
                x = layer(x)
        return x


# ---------------------------------------------------------------- Qwen2 (Qwen2ForCausalLM)
def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rope_cos_sin(start: int, n: int, head_dim: int, theta: float, device: torch.device, dtype: torch.dtype):
    """cos/sin [n, head_dim] for positions start..start+n-1 (computed in float32 as transformers does)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    pos = torch.arange(start, start + n, dtype=torch.int64, device=device).float()
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Qwen2Attention(nn.Module):
    def __init__(self, c: Cfg):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, self.heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(c.hidden_size, self.kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(c.hidden_size, self.kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.heads * self.head_dim, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, past_k, past_v) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B,N,D]; past [B,KVH,P,hd]; causal over the new tokens, full attention to the past."""
        b, n = x.shape[0], x.shape[1]
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = torch.cat([past_k, k * cos + rotate_half(k) * sin], dim=2)
        v = torch.cat([past_v, v], dim=2)
        rep = self.heads // self.kv_heads  # query head h reads key/value head h // rep (transformers' repeat_kv)
        scores = (q @ k.repeat_interleave(rep, dim=1).transpose(2, 3)) / math.sqrt(self.head_dim)
        p = past_k.shape[2]
        allowed = torch.ones(n, p + n, dtype=torch.bool, device=x.device).tril(diagonal=p)
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        out = (probs @ v.repeat_interleave(rep, dim=1)).transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.o_proj(out), k, v


class Qwen2MLP(nn.Module):
    def __init__(self, c: Cfg):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)
        self.act_fn = activation(c.hidden_act)

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class Qwen2DecoderLayer(nn.Module):
    def __init__(self, c: Cfg):
        super().__init__()
        self.self_attn = Qwen2Attention(c)
        self.mlp = Qwen2MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, cos, sin, past_k, past_v) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, k, v = self.self_attn(self.input_layernorm(x), cos, sin, past_k, past_v)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), k, v


class Qwen2Model(nn.Module):
    def __init__(self, c: Cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([Qwen2DecoderLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Qwen2ForCausalLM(nn.Module):
    def __init__(self, c: Cfg):
        super().__init__()
        self.cfg = c
        self.model = Qwen2Model(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward_full(self, embeds):
        """Eager reference without a cache: all positions' logits and final-norm hidden states."""
        c = self.cfg
        b, n = embeds.shape[0], embeds.shape[1]
        cos, sin = rope_cos_sin(0, n, c.head_dim, float(c.rope_theta), embeds.device, embeds.dtype)
        empty = embeds.new_zeros(b, c.num_key_value_heads, 0, c.head_dim)
        x = embeds
        for layer in self.model.layers:
            x, _, _ = layer(x, cos, sin, empty, empty)
        hidden = self.model.norm(x)
        return self.lm_head(hidden), hidden


# ---------------------------------------------------------------- the whole checkpoint
def pixel_shuffle(x, scale: float, ps_version: str):
    """InternVL's pixel shuffle on [N, W, H, C] (v1 leaves the result transposed, as the original)."""
    n, w, h, c = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    x = x.reshape(n, w, int(h * scale), int(c / scale)).permute(0, 2, 1, 3).contiguous()
    x = x.reshape(n, int(h * scale), int(w * scale), int(c / (scale * scale)))
    if ps_version != "v1":
        x = x.permute(0, 2, 1, 3).contiguous()
    return x


class GroundingEncoder(nn.Module):
    """Sa2VA's SAM2 wrapper: only child `sam2_model` (its image mean/std are Python constants)."""

    def __init__(self, sam2_cfg: dict):
        super().__init__()
        import sam2_ref  # tools/model/sam2_ref.py
        self.sam2_model = sam2_ref.SAM2Model(sam2_cfg)


class UniBiomed(nn.Module):
    """Sa2VAChatModel's parameter tree: vision_model, mlp1, language_model, grounding_encoder,
    text_hidden_fcs. `config` is config.json; `sam2_cfg` comes from sam2_ref.sam2_config."""

    def __init__(self, config: dict, sam2_cfg: dict):
        super().__init__()
        vc, lc, tc = vision_config(config), llm_config(config), top_config(config)
        self.vcfg, self.lcfg, self.tcfg = vc, lc, tc
        self.vision_model = InternVisionModel(vc)
        width = vc.hidden_size * int(1 / tc.downsample_ratio) ** 2
        self.mlp1 = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, lc.hidden_size), nn.GELU(),
                                  nn.Linear(lc.hidden_size, lc.hidden_size))
        self.language_model = Qwen2ForCausalLM(lc)
        self.grounding_encoder = GroundingEncoder(sam2_cfg)
        out_dim = int(sam2_cfg["d_model"])  # SAM2Base.hidden_dim = the FPN neck's d_model
        self.text_hidden_fcs = nn.Sequential(nn.Linear(lc.hidden_size, lc.hidden_size), nn.ReLU(inplace=True),
                                             nn.Linear(lc.hidden_size, out_dim), nn.Dropout(0.0))

    def vision_depth(self) -> int:
        """How many encoder layers `select_layer` needs (-1: all)."""
        n, s = self.vcfg.num_hidden_layers, self.tcfg.select_layer
        depth = s if s >= 0 else n + 1 + s
        if not 0 <= depth <= n:
            raise ValueError(f"select_layer {s} is outside the {n}-layer vision encoder")
        return depth

    def extract_feature(self, pixel_values):
        """Sa2VAChatModel.extract_feature: [N,3,T,T] -> [N, tokens_per_tile, D] in the weights' dtype."""
        return VisionEncoderPart(self)(pixel_values)


# ---------------------------------------------------------------- bundle format 2 parts
class VisionEncoderPart(nn.Module):
    def __init__(self, m: UniBiomed):
        super().__init__()
        self.vision_model = m.vision_model
        self.mlp1 = m.mlp1
        self.depth = m.vision_depth()
        self.scale = float(m.tcfg.downsample_ratio)
        self.ps_version = str(m.tcfg.ps_version)

    def forward(self, pixel_values):
        x = self.vision_model(pixel_values.to(self.mlp1[1].weight.dtype), self.depth)[:, 1:, :]
        side = int(math.sqrt(x.shape[1]))
        x = pixel_shuffle(x.reshape(x.shape[0], side, side, x.shape[2]), self.scale, self.ps_version)
        return self.mlp1(x.reshape(x.shape[0], -1, x.shape[-1])).float()


class LanguageModelPart(nn.Module):
    """forward(embeds [B,N,D], start, past_k/past_v [L,B,KVH,P,hd]) -> (logits of the last position
    [B,1,V] f32, final-norm hidden [B,N,D] f32, new_k, new_v [L,B,KVH,P+N,hd] in the weights' dtype)."""

    def __init__(self, lm: Qwen2ForCausalLM):
        super().__init__()
        self.model = lm.model
        self.lm_head = lm.lm_head
        self.head_dim = int(lm.cfg.head_dim)
        self.theta = float(lm.cfg.rope_theta)

    def forward(self, embeds, start: int, past_k, past_v) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        dt = self.lm_head.weight.dtype
        x = embeds.to(dt)
        past_k, past_v = past_k.to(dt), past_v.to(dt)
        cos, sin = rope_cos_sin(start, x.shape[1], self.head_dim, self.theta, x.device, dt)
        ks: List[torch.Tensor] = []
        vs: List[torch.Tensor] = []
        for i, layer in enumerate(self.model.layers):
            x, k, v = layer(x, cos, sin, past_k[i], past_v[i])
            ks.append(k)
            vs.append(v)
        hidden = self.model.norm(x)
        logits = self.lm_head(hidden[:, -1:, :])
        return logits.float(), hidden.float(), torch.stack(ks), torch.stack(vs)

    @torch.jit.export
    def embed(self, ids):
        return self.model.embed_tokens(ids).float()


class SegProjectionPart(nn.Module):
    def __init__(self, m: UniBiomed):
        super().__init__()
        self.text_hidden_fcs = m.text_hidden_fcs

    def forward(self, hidden):
        return self.text_hidden_fcs(hidden.to(self.text_hidden_fcs[0].weight.dtype)).float()
