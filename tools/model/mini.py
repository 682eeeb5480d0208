"""The mini UniBiomed: the five parts of the Sa2VA/UniBiomed inference path at toy scale.

  1 VisionEncoder     image -> visual tokens (+ a dense per-class lesion map that feeds them)
  2 LanguageModel     causal transformer with KV cache: embeddings -> logits, hidden, cache
  3 SegProjection     hidden state of a [SEG] token -> prompt embedding (text_hidden_fcs)
  4 GroundingEncoder  image -> per-pixel embeddings (SAM image encoder slot)
  5 MaskDecoder       per-pixel embeddings + prompt -> mask logits

Parts 1 and 4 share one convolutional trunk while training (Sa2VA keeps two image paths; here the
grounding path reuses the vision trunk's weights, exported as its own module).
"""
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

D, E, HEADS, LAYERS, MAX_POS, NCLS = 128, 32, 4, 3, 192, 6
CH = [16, 32, 64, 128, 128]  # stem(128), 64, 32, 16, 8 for a 256 input


def block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(4, cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.GroupNorm(4, cout), nn.ReLU(inplace=True))


class Trunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = block(1, CH[0], 2)                       # 128 (input 256)
        self.s2 = block(CH[0], CH[1], 2)                     # 64
        self.s3 = block(CH[1], CH[2], 2)                     # 32
        self.s4 = block(CH[2], CH[3], 2)                     # 16
        self.s5 = block(CH[3], CH[4], 2)                     # 8

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        f1 = self.stem(x)
        f2 = self.s2(f1)
        f3 = self.s3(f2)
        f4 = self.s4(f3)
        f5 = self.s5(f4)
        return [x, f1, f2, f3, f4, f5]


class VisionHead(nn.Module):
    """Trunk features -> 64 visual tokens and the auxiliary lesion map (16x16 logits per class)."""

    def __init__(self):
        super().__init__()
        self.aux = nn.Conv2d(CH[3], NCLS, 1)
        self.proj = nn.Linear(CH[4] + NCLS, D)
        self.pos = nn.Parameter(torch.zeros(64, D))

    def forward(self, f4: torch.Tensor, f5: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        aux = self.aux(f4)
        pooled = F.max_pool2d(torch.sigmoid(aux), 2)
        t = torch.cat([f5, pooled * 4.0], 1).flatten(2).transpose(1, 2)
        return self.proj(t) + self.pos, aux


class VisionEncoder(nn.Module):
    def __init__(self, trunk: Trunk, head: VisionHead):
        super().__init__()
        self.trunk, self.head = trunk, head

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk(image)
        return self.head(f[4], f[5])


class Up(nn.Module):
    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.conv = block(cin + cskip, cout, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], 1))


class PixelDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.u4 = Up(CH[4], CH[3], 64)
        self.u3 = Up(64, CH[2], 48)
        self.u2 = Up(48, CH[1], 32)
        self.u1 = Up(32, CH[0], 32)
        self.out = nn.Conv2d(32, E, 1)

    def forward(self, f: List[torch.Tensor]) -> torch.Tensor:
        x = self.u4(f[5], f[4])
        x = self.u3(x, f[3])
        x = self.u2(x, f[2])
        x = self.u1(x, f[1])
        return self.out(x)  # (B,E,H/2,W/2): masks are decoded at half the input size


class GroundingEncoder(nn.Module):
    def __init__(self, trunk: Trunk, decoder: PixelDecoder):
        super().__init__()
        self.trunk, self.decoder = trunk, decoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.trunk(image))


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.o = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))
        self.d, self.h = D, HEADS

    def forward(self, x: torch.Tensor, pk: torch.Tensor, pv: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        dh = self.d // self.h
        q, k, v = self.qkv(self.ln1(x)).split(self.d, 2)
        q = q.view(b, t, self.h, dh).transpose(1, 2)
        k = torch.cat([pk, k.view(b, t, self.h, dh).transpose(1, 2)], 2)
        v = torch.cat([pv, v.view(b, t, self.h, dh).transpose(1, 2)], 2)
        p = k.shape[2] - t
        att = (q @ k.transpose(-1, -2)) / float(dh) ** 0.5
        mask = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(p)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, self.d)
        x = x + self.o(y)
        return x + self.mlp(self.ln2(x)), k, v


class LanguageModel(nn.Module):
    def __init__(self, vocab: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, D)
        self.pos = nn.Embedding(MAX_POS, D)
        self.layers = nn.ModuleList([Layer() for _ in range(LAYERS)])
        self.ln = nn.LayerNorm(D)
        self.head = nn.Linear(D, vocab)

    @torch.jit.export
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tok(ids)

    def forward(self, x: torch.Tensor, start: int, past_k: torch.Tensor, past_v: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B,T,D) embeddings at positions start..start+T-1; past_k/v: (L,B,H,P,D/H), P may be 0."""
        t = x.shape[1]
        x = x + self.pos(torch.arange(start, start + t, device=x.device))[None]
        ks: List[torch.Tensor] = []
        vs: List[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, past_k[i], past_v[i])
            ks.append(k)
            vs.append(v)
        h = self.ln(x)
        return self.head(h), h, torch.stack(ks), torch.stack(vs)


class SegProjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(D, D), nn.ReLU(inplace=True), nn.Linear(D, E + 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fc(hidden)


class MaskDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.e = E

    def forward(self, pixels: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """pixels (B,E,H,W), prompt (B,E+1: weights and bias) -> mask logits (B,1,H,W)."""
        w, b = prompt[:, :self.e], prompt[:, self.e:]
        return (pixels * w[:, :, None, None]).sum(1, keepdim=True) / float(self.e) ** 0.5 + b[:, :, None, None]


class MiniUniBiomed(nn.Module):
    def __init__(self, vocab: int):
        super().__init__()
        self.trunk = Trunk()
        self.vhead = VisionHead()
        self.pixdec = PixelDecoder()
        self.lm = LanguageModel(vocab)
        self.segproj = SegProjection()
        self.maskdec = MaskDecoder()

    def parts(self):
        return {"vision_encoder": VisionEncoder(self.trunk, self.vhead),
                "language_model": self.lm,
                "seg_projection": self.segproj,
                "grounding_encoder": GroundingEncoder(self.trunk, self.pixdec),
                "mask_decoder": self.maskdec}
