#!/usr/bin/python3
"""tools/model/sam2_ref.py: UniBiomed's SAM2 (hiera-large) module tree and its two bundle parts.

- The state-dict names of SAM2Model equal a list generated here from the published module tree
  (projects/unibiomed/hf/models/sam2.py with sam2_hiera_l.yaml's settings), for hiera-large and
  for the tiny config; hiera-large's shapes are spot-checked and its size is SAM2-L's 224.4 M.
- sam2_config() rebuilds both configs from tensor shapes alone; config.json's key wins.
- GroundingEncoderPart / MaskDecoderPart: TorchScript gives the eager outputs, rows of a batch are
  independent, the kept mask is the best-IoU one of the three multimask outputs, inputs are cast to
  the weights' dtype and outputs are float32, and the 1024-px contract shapes hold.
"""
import io
import pathlib
import sys
import time
import unittest

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "model"))
from sam2_ref import (CONFIG_KEY, PREFIX, GroundingEncoderPart, MaskDecoderPart, SAM2Model,  # noqa: E402
                      canonical_sam2_key, sam2_config, sam2_tiny_config)

torch.set_num_threads(2)


def linear(name):
    return [name + ".weight", name + ".bias"]


def mlp(name, n):
    return sum((linear(f"{name}.layers.{i}") for i in range(n)), [])


def attention(name):
    return sum((linear(f"{name}.{p}") for p in ("q_proj", "k_proj", "v_proj", "out_proj")), [])


def expected_keys(stages, mem_layers, fuser_layers, mask_ds_layers, decoder_depth):
    """The state-dict names of the published SAM2Base for hiera-large's flags, written from the
    module tree by hand (independently of sam2_ref's code)."""
    keys = ["maskmem_tpos_enc", "no_mem_embed", "no_mem_pos_enc", "no_obj_ptr"]
    t = "image_encoder.trunk."
    keys += [t + "pos_embed", t + "pos_embed_window"] + linear(t + "patch_embed.proj")
    starts = [sum(stages[:i]) for i in range(1, len(stages))]
    for i in range(sum(stages)):
        b = f"{t}blocks.{i}."
        keys += linear(b + "norm1") + linear(b + "attn.qkv") + linear(b + "attn.proj")
        keys += linear(b + "norm2") + mlp(b + "mlp", 2) + (linear(b + "proj") if i in starts else [])
    keys += sum((linear(f"image_encoder.neck.convs.{j}.conv") for j in range(len(stages))), [])
    keys += linear("mask_downsample")
    for i in range(mem_layers):
        b = f"memory_attention.layers.{i}."
        keys += attention(b + "self_attn") + attention(b + "cross_attn_image")
        keys += sum((linear(b + n) for n in ("linear1", "linear2", "norm1", "norm2", "norm3")), [])
    keys += linear("memory_attention.norm")
    e = "memory_encoder."
    for j in range(mask_ds_layers):
        keys += linear(f"{e}mask_downsampler.encoder.{3 * j}") + linear(f"{e}mask_downsampler.encoder.{3 * j + 1}")
    keys += linear(f"{e}mask_downsampler.encoder.{3 * mask_ds_layers}") + linear(e + "pix_feat_proj")
    for i in range(fuser_layers):
        b = f"{e}fuser.layers.{i}."
        keys += [b + "g_weight"] + sum((linear(b + n) for n in ("dwconv", "norm", "pwconv1", "pwconv2")), [])
    keys += linear(e + "out_proj")
    p = "sam_prompt_encoder."
    keys += [p + "pe_layer.positional_encoding_gaussian_matrix", p + "not_a_point_embed.weight",
             p + "no_mask_embed.weight"] + [f"{p}point_embeddings.{i}.weight" for i in range(4)]
    keys += sum((linear(f"{p}mask_downscaling.{i}") for i in (0, 1, 3, 4, 6)), [])
    d = "sam_mask_decoder."
    for i in range(decoder_depth):
        b = f"{d}transformer.layers.{i}."
        keys += sum((attention(b + n) for n in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")), [])
        keys += sum((linear(b + f"norm{k}") for k in range(1, 5)), []) + mlp(b + "mlp", 2)
    keys += attention(d + "transformer.final_attn_token_to_image") + linear(d + "transformer.norm_final_attn")
    keys += [d + "iou_token.weight", d + "mask_tokens.weight", d + "obj_score_token.weight"]
    keys += sum((linear(f"{d}output_upscaling.{i}") for i in (0, 1, 3)), [])
    keys += linear(d + "conv_s0") + linear(d + "conv_s1")
    keys += sum((mlp(f"{d}output_hypernetworks_mlps.{i}", 3) for i in range(4)), [])
    keys += mlp(d + "iou_prediction_head", 3) + mlp(d + "pred_obj_score_head", 3) + mlp("obj_ptr_proj", 3)
    return keys


HIERA_L_SHAPES = {
    "image_encoder.trunk.pos_embed": (1, 144, 7, 7),
    "image_encoder.trunk.pos_embed_window": (1, 144, 8, 8),
    "image_encoder.trunk.patch_embed.proj.weight": (144, 3, 7, 7),
    "image_encoder.trunk.blocks.2.proj.weight": (288, 144),
    "image_encoder.trunk.blocks.44.attn.qkv.weight": (3456, 576),
    "image_encoder.trunk.blocks.47.mlp.layers.0.weight": (4608, 1152),
    "image_encoder.neck.convs.0.conv.weight": (256, 1152, 1, 1),
    "image_encoder.neck.convs.3.conv.weight": (256, 144, 1, 1),
    "sam_mask_decoder.conv_s0.weight": (32, 256, 1, 1),
    "sam_mask_decoder.conv_s1.weight": (64, 256, 1, 1),
    "sam_mask_decoder.mask_tokens.weight": (4, 256),
    "sam_mask_decoder.output_upscaling.0.weight": (256, 64, 2, 2),
    "sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight": (128, 256),
    "sam_mask_decoder.iou_prediction_head.layers.2.weight": (4, 256),
    "sam_mask_decoder.pred_obj_score_head.layers.2.weight": (1, 256),
    "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
    "sam_prompt_encoder.mask_downscaling.0.weight": (4, 1, 2, 2),
    "memory_attention.layers.3.cross_attn_image.k_proj.weight": (256, 64),
    "memory_attention.layers.0.linear1.weight": (2048, 256),
    "memory_encoder.mask_downsampler.encoder.9.weight": (256, 64, 3, 3),
    "memory_encoder.mask_downsampler.encoder.12.weight": (256, 256, 1, 1),
    "memory_encoder.fuser.layers.1.dwconv.weight": (256, 1, 7, 7),
    "memory_encoder.fuser.layers.1.g_weight": (256,),
    "memory_encoder.out_proj.weight": (64, 256, 1, 1),
    "maskmem_tpos_enc": (7, 1, 1, 64), "no_mem_embed": (1, 1, 256), "no_obj_ptr": (1, 256),
    "mask_downsample.weight": (1, 1, 4, 4), "obj_ptr_proj.layers.2.weight": (256, 256),
}


def shapes_of(model, prefix=""):
    return {prefix + k: list(v.shape) for k, v in model.state_dict().items()}


class HieraLarge(unittest.TestCase):
    def test_names_shapes_and_size(self):
        model = SAM2Model(sam2_config({}))
        sd = model.state_dict()
        want = expected_keys([2, 6, 36, 4], mem_layers=4, fuser_layers=2, mask_ds_layers=4, decoder_depth=2)
        self.assertEqual(len(want), len(set(want)))
        self.assertEqual(sorted(sd), sorted(want))
        for name, shape in HIERA_L_SHAPES.items():
            self.assertEqual(tuple(sd[name].shape), shape, name)
        n = sum(p.numel() for p in model.parameters())
        print(f"hiera-large SAM2: {len(sd)} tensors, {n:,} parameters")
        self.assertTrue(224.0e6 < n < 225.0e6, n)
        self.assertEqual(sam2_config({}, shapes_of(model, PREFIX)), sam2_config({}))


class Tiny(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.model = SAM2Model(sam2_tiny_config()).eval()
        cls.enc = GroundingEncoderPart(cls.model).eval()
        cls.dec = MaskDecoderPart(cls.model).eval()

    def test_names(self):
        want = expected_keys([1, 1, 3, 1], mem_layers=2, fuser_layers=1, mask_ds_layers=4, decoder_depth=2)
        self.assertEqual(sorted(self.model.state_dict()), sorted(want))

    def test_config_from_shapes_and_key(self):
        tiny = sam2_tiny_config()
        self.assertEqual(sam2_config({}, shapes_of(self.model)), tiny)
        self.assertEqual(sam2_config({"model_type": "sa2va_chat"}, shapes_of(self.model, PREFIX)), tiny)
        self.assertEqual(sam2_config({CONFIG_KEY: tiny}), tiny)
        self.assertEqual(sam2_config({CONFIG_KEY: {"decoder_heads": 4}}, shapes_of(self.model))["decoder_heads"], 4)
        with self.assertRaises(ValueError):
            sam2_config({CONFIG_KEY: {"no_such_size": 1}})
        self.assertEqual(canonical_sam2_key(PREFIX + "memory_encoder.fuser.layers.0.gamma"),
                         PREFIX + "memory_encoder.fuser.layers.0.g_weight")

    def run_parts(self, enc, dec, image, prompt):
        with torch.no_grad():
            embed, s0, s1 = enc(image)
            return (embed, s0, s1) + tuple(dec(embed, s0, s1, prompt))

    def test_script_equals_eager_and_rows_are_independent(self):
        torch.manual_seed(1)
        image, prompt = torch.randn(2, 3, 256, 256), torch.randn(2, 32)
        eager = self.run_parts(self.enc, self.dec, image, prompt)
        shapes = [(2, 32, 16, 16), (2, 4, 64, 64), (2, 8, 32, 32), (2, 1, 64, 64), (2,)]
        self.assertEqual([tuple(t.shape) for t in eager], shapes)
        scripted = self.run_parts(torch.jit.script(self.enc), torch.jit.script(self.dec), image, prompt)
        for a, b in zip(eager, scripted):
            self.assertLess((a - b).abs().max().item(), 1e-5)
        row1 = self.run_parts(self.enc, self.dec, image[1:], prompt[1:])
        for a, b in zip(eager, row1):
            self.assertLess((a[1:] - b).abs().max().item(), 1e-4)
        self.assertGreater((eager[3][0] - eager[3][1]).abs().max().item(), 1e-3)

    def test_kept_mask_is_best_of_three(self):
        torch.manual_seed(2)
        image, prompt = torch.randn(2, 3, 256, 256), torch.randn(2, 32)
        embed, s0, s1, mask, iou = self.run_parts(self.enc, self.dec, image, prompt)
        pe, md = self.model.sam_prompt_encoder, self.model.sam_mask_decoder
        sparse = torch.stack([pe.not_a_point_embed.weight[0], pe.not_a_point_embed.weight[0]])
        sparse = torch.cat([sparse[None].expand(2, 2, 32), prompt[:, None]], dim=1)
        with torch.no_grad():
            masks, ious = md.predict(embed, pe.pe_layer.dense(16, 16), sparse,
                                     pe.no_mask_embed.weight.reshape(1, -1, 1, 1), s0, s1)
        for b in range(2):
            k = int(torch.argmax(ious[b, 1:])) + 1
            self.assertLess((mask[b, 0] - masks[b, k]).abs().max().item(), 1e-5)
            self.assertAlmostEqual(iou[b].item(), ious[b, k].item(), places=6)
            self.assertTrue(0.0 < iou[b].item() < 1.0)
        shift = self.model.no_mem_embed.detach().reshape(1, -1, 1, 1)
        with torch.no_grad():
            level = self.model.image_encoder(image)[-1]
        self.assertLess((embed - (level + shift)).abs().max().item(), 1e-6)

    def test_saved_script_moves_to_another_dtype(self):
        """What the C++ runtime does: load the saved TorchScript parts and move them (here to
        float64 on the CPU); inputs stay float32, outputs are float32 and agree."""
        torch.manual_seed(4)
        image, prompt = torch.randn(1, 3, 256, 256), torch.randn(1, 32)
        ref = self.run_parts(self.enc, self.dec, image, prompt)
        parts = []
        for part in (self.enc, self.dec):
            buf = io.BytesIO()
            torch.jit.save(torch.jit.script(part), buf)
            buf.seek(0)
            parts.append(torch.jit.load(buf).to(torch.float64))
        out = self.run_parts(parts[0], parts[1], image, prompt)
        for a, b in zip(ref, out):
            self.assertEqual(b.dtype, torch.float32)
            self.assertLess((a - b).abs().max().item(), 1e-3)

    def test_contract_shapes_at_1024(self):
        t0 = time.time()
        out = self.run_parts(torch.jit.script(self.enc), torch.jit.script(self.dec),
                             torch.randn(1, 3, 1024, 1024), torch.randn(1, 32))
        self.assertEqual([tuple(t.shape) for t in out],
                         [(1, 32, 64, 64), (1, 4, 256, 256), (1, 8, 128, 128), (1, 1, 256, 256), (1,)])
        print(f"tiny SAM2 at 1024 px: {time.time() - t0:.1f} s")


if __name__ == "__main__":
    unittest.main(verbosity=2)
