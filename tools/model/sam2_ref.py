"""UniBiomed's SAM2 (hiera-large) for torch 1.13, and its two inference parts for the bundle.

SAM2Model(cfg) has the module tree of the published SAM2Base as UniBiomed builds it
(projects/unibiomed/hf/models/sam2.py, SAM2VideoPredictor with sam2_hiera_l.yaml's settings):
its state_dict keys are the checkpoint's `grounding_encoder.sam2_model.*` keys without that prefix.
cfg comes from sam2_config(config_json, shapes) (sam2_config.py). The model has no forward of its
own; the node runs it through:

- GroundingEncoderPart(sam2): image [B,3,S,S] (S = image_size, 1024; /255 then ImageNet mean/std)
  -> (image_embed [B,d,S/16,S/16] = the coarsest kept FPN level + no_mem_embed, as SAM2Base does
  for a frame without memory; feat_s0 [B,d/8,S/4,S/4] = sam_mask_decoder.conv_s0(FPN level 0);
  feat_s1 [B,d/4,S/8,S/8] = conv_s1(FPN level 1)). d = 256 for hiera-large.
- MaskDecoderPart(sam2): (image_embed, feat_s0, feat_s1, prompt [B,d]) -> (mask_logits
  [B,1,S/4,S/4], iou [B]). As Sa2VA's _forward_sam_heads with a language embedding and no points:
  sparse prompt = [not_a_point, not_a_point, prompt] (the empty point and the prompt encoder's
  padding point both carry label -1), dense = no_mask_embed, image PE = the prompt encoder's dense
  PE, multimask output (3 masks, tokens 1..3) and the mask with the highest predicted IoU is kept;
  iou is that mask's predicted IoU (sigmoid). The object score does not gate the mask (the
  published code comments that out).
Both cast their floating inputs to their own weights' dtype and return float32, so the runtime may
move them to any device and dtype. Row b of every input belongs to slice b.
"""
import pathlib
import sys
from typing import Tuple

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from sam2_config import (CONFIG_KEY, HIERA_L, PREFIX, canonical_sam2_key, infer_from_shapes,  # noqa: E402,F401
                         sam2_config, sam2_tiny_config, strip_prefix)
from sam2_heads import MLP, MaskDecoder, PromptEncoder  # noqa: E402
from sam2_hiera import ImageEncoder  # noqa: E402
from sam2_memory import MemoryAttention, MemoryEncoder  # noqa: E402


class SAM2Model(nn.Module):
    """Built from a sam2_config() dict; random init (load a state dict for real weights)."""

    def __init__(self, cfg: dict):
        super().__init__()
        d, mem = cfg["d_model"], cfg["mem_dim"]
        self.cfg = dict(cfg)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg["num_maskmem"], 1, 1, mem))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d))
        if cfg["use_obj_ptrs_in_encoder"]:
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, d))
        self.image_encoder = ImageEncoder(cfg)
        if cfg["use_obj_ptrs_in_encoder"]:
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.memory_attention = MemoryAttention(cfg)
        self.memory_encoder = MemoryEncoder(cfg)
        self.sam_prompt_encoder = PromptEncoder(d, cfg["prompt_mask_in_chans"])
        self.sam_mask_decoder = MaskDecoder(
            d, cfg["decoder_depth"], cfg["decoder_heads"], cfg["decoder_mlp_dim"],
            cfg["decoder_attn_downsample"], cfg["num_multimask_outputs"], cfg["iou_head_depth"],
            cfg["iou_head_hidden_dim"], cfg["pred_obj_scores_mlp"])
        if not cfg["use_obj_ptrs_in_encoder"]:
            self.obj_ptr_proj = nn.Identity()
        elif cfg["use_mlp_for_obj_ptr_proj"]:
            self.obj_ptr_proj = MLP(d, d, d, 3)
        else:
            self.obj_ptr_proj = nn.Linear(d, d)
        self.obj_ptr_tpos_proj = nn.Linear(d, mem) if cfg["proj_tpos_enc_in_obj_ptrs"] else nn.Identity()
        trunk = self.image_encoder.trunk
        for p in [self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, trunk.pos_embed,
                  trunk.pos_embed_window] + ([self.no_obj_ptr] if cfg["use_obj_ptrs_in_encoder"] else []):
            nn.init.trunc_normal_(p, std=0.02)


class GroundingEncoderPart(nn.Module):
    """Bundle part 4: the SAM2 image encoder (module docstring). Shares sam2's parameters."""

    def __init__(self, sam2: SAM2Model):
        super().__init__()
        self.image_encoder = sam2.image_encoder
        self.conv_s0 = sam2.sam_mask_decoder.conv_s0
        self.conv_s1 = sam2.sam_mask_decoder.conv_s1
        self.no_mem_embed = sam2.no_mem_embed

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.image_encoder(image.to(self.no_mem_embed.dtype))
        embed = feats[-1] + self.no_mem_embed.reshape(1, -1, 1, 1)
        return embed.float(), self.conv_s0(feats[0]).float(), self.conv_s1(feats[1]).float()


class MaskDecoderPart(nn.Module):
    """Bundle part 5: prompt encoder + mask decoder for one language prompt per slice (module
    docstring). Shares sam2's parameters."""

    def __init__(self, sam2: SAM2Model):
        super().__init__()
        self.prompt_encoder = sam2.sam_prompt_encoder
        self.mask_decoder = sam2.sam_mask_decoder

    def forward(self, image_embed: torch.Tensor, feat_s0: torch.Tensor, feat_s1: torch.Tensor,
                prompt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        dt = self.mask_decoder.iou_token.weight.dtype
        image_embed = image_embed.to(dt)
        b, h, w = image_embed.shape[0], image_embed.shape[2], image_embed.shape[3]
        pad = self.prompt_encoder.not_a_point_embed.weight
        sparse = torch.cat([pad[None].expand(b, 2, -1), prompt.to(dt)[:, None, :]], dim=1)
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        pe = self.prompt_encoder.pe_layer.dense(h, w).to(dt)
        masks, iou = self.mask_decoder.predict(image_embed, pe, sparse, dense, feat_s0.to(dt), feat_s1.to(dt))
        masks, iou = masks[:, 1:], iou[:, 1:]
        best = torch.argmax(iou, dim=1)
        rows = torch.arange(b, device=best.device)
        return masks[rows, best].unsqueeze(1).float(), iou[rows, best].float()
