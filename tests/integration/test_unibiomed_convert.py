#!/usr/bin/python3
"""The UniBiomed converter (tools/model/convert_unibiomed.py) on a tiny synthetic checkpoint in the
released layout: the safetensors reader/writer round trip (bf16 included), the checkpoint's layout,
the format-2 manifest, every exported part's contract shapes and dtypes, parity of the exported parts
with the eager reference modules (fp32 and bf16 bundles; the language model through its KV cache
against one full forward), and strict loading: a removed, an added and a mis-shaped tensor each stop
the conversion with a non-zero exit that names the tensor."""
import hashlib
import json
import pathlib
import struct
import subprocess
import sys
import tempfile
import unittest

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "model"
sys.path.insert(0, str(TOOLS))
import convert_unibiomed  # noqa: E402
import safetensors_io  # noqa: E402
import sam2_ref  # noqa: E402
import unibiomed_ref as U  # noqa: E402

PARTS = ["vision_encoder", "language_model", "seg_projection", "grounding_encoder", "mask_decoder"]


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True)


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def reference(ckpt_dir, dtype):
    """The eager UniBiomed with the checkpoint's weights rounded to `dtype`, computing in fp32."""
    config = json.loads((ckpt_dir / "config.json").read_text())
    with safetensors_io.SafetensorsFile(ckpt_dir / "model.safetensors") as f:
        model, _ = convert_unibiomed.build(config, f, dtype)
    return model.float()


def close(a, b, tol):
    err = (a.float() - b.float()).abs().max().item()
    scale = b.float().abs().max().item()
    return err <= tol * max(scale, 1e-6), f"max abs diff {err:.3g} vs max abs {scale:.3g}"


class ConvertTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(2)
        torch.manual_seed(0)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = pathlib.Path(cls.tmp.name)
        cls.ckpt = cls.dir / "ckpt"
        r = run(TOOLS / "make_synthetic_unibiomed.py", cls.ckpt, "--size", "tiny", "--seed", "3")
        assert r.returncode == 0, r.stderr
        cls.bundles = {}
        for dtype in ("fp32", "bf16"):
            r = run(TOOLS / "convert_unibiomed.py", cls.ckpt, cls.dir / dtype, "--dtype", dtype)
            assert r.returncode == 0, r.stderr
            cls.bundles[dtype] = cls.dir / dtype
        cls.config = json.loads((cls.ckpt / "config.json").read_text())
        cls.pixels = torch.randn(2, 3, 448, 448)
        cls.image = torch.randn(2, 3, 1024, 1024)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_safetensors_round_trip(self):
        tensors = {"f32": torch.randn(3, 5), "bf16": torch.randn(4, 7).bfloat16(), "f16": torch.randn(6).half(),
                   "i64": torch.arange(-3, 9).reshape(3, 4), "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4)}
        path = self.dir / "rt.safetensors"
        safetensors_io.save_file(tensors, path, metadata={"format": "pt"})
        raw = path.read_bytes()  # the layout, read independently of the reader
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        self.assertEqual(header.pop("__metadata__"), {"format": "pt"})
        self.assertEqual(header["bf16"]["dtype"], "BF16")
        self.assertEqual(header["i64"]["shape"], [3, 4])
        begin, end = header["bf16"]["data_offsets"]
        self.assertEqual(raw[8 + n + begin:8 + n + end], tensors["bf16"].view(torch.int16).numpy().tobytes())
        back = safetensors_io.load_file(path)
        self.assertEqual(list(back), list(tensors))
        for k, t in tensors.items():
            self.assertEqual(back[k].dtype, t.dtype, k)
            self.assertTrue(torch.equal(back[k], t), k)

    def test_pixel_shuffle_v2(self):
        """InternVL's v2 pixel shuffle: output token (i, j) = the 2x2 patch block at rows 2i..2i+1,
        columns 2j..2j+1, channels in the order (2i,2j), (2i,2j+1), (2i+1,2j), (2i+1,2j+1)."""
        x = torch.randn(1, 4, 6, 3)
        y = U.pixel_shuffle(x, 0.5, "v2")
        self.assertEqual(list(y.shape), [1, 2, 3, 12])
        for i in range(2):
            for j in range(3):
                block = torch.cat([x[0, 2 * i, 2 * j], x[0, 2 * i, 2 * j + 1], x[0, 2 * i + 1, 2 * j], x[0, 2 * i + 1, 2 * j + 1]])
                self.assertTrue(torch.equal(y[0, i, j], block), (i, j))

    def test_qwen2_attention_by_hand(self):
        """Grouped-query attention written out per head and position: query head h reads key/value
        head h // (heads / kv_heads), position i sees positions <= i, RoPE on q and k (as transformers)."""
        c = U.Cfg(hidden_size=24, num_attention_heads=4, num_key_value_heads=2, head_dim=6)
        att = U.Qwen2Attention(c)
        for p in att.parameters():
            torch.nn.init.normal_(p, std=0.3)
        x = torch.randn(1, 5, 24)
        cos, sin = U.rope_cos_sin(0, 5, 6, 10000.0, x.device, x.dtype)
        empty = torch.zeros(1, 2, 0, 6)
        out, _, _ = att(x, cos, sin, empty, empty)
        q = att.q_proj(x)[0].view(5, 4, 6)
        k = att.k_proj(x)[0].view(5, 2, 6)
        v = att.v_proj(x)[0].view(5, 2, 6)
        heads = []
        for h in range(4):
            rows = []
            for i in range(5):
                qi = q[i, h] * cos[i] + U.rotate_half(q[i, h]) * sin[i]
                ks = torch.stack([k[j, h // 2] * cos[j] + U.rotate_half(k[j, h // 2]) * sin[j] for j in range(i + 1)])
                w = torch.softmax(ks @ qi / 6 ** 0.5, dim=0)
                rows.append(w @ v[: i + 1, h // 2])
            heads.append(torch.stack(rows))
        expected = att.o_proj(torch.cat(heads, dim=1))
        self.assertTrue(torch.allclose(out[0], expected, atol=1e-5), (out[0] - expected).abs().max())

    def test_checkpoint_layout(self):
        with safetensors_io.SafetensorsFile(self.ckpt / "model.safetensors") as f:
            dtypes = {n: f.dtype(n) for n in f.names()}
            self.assertEqual(f.shape("language_model.model.embed_tokens.weight"), (151679, 64))
        self.assertTrue(all((d == torch.bfloat16) == n.startswith("vision_model.") for n, d in dtypes.items()))
        for prefix in ("vision_model.", "mlp1.", "language_model.model.", "language_model.lm_head.",
                       "grounding_encoder.sam2_model.memory_attention.", "text_hidden_fcs.2."):
            self.assertTrue(any(n.startswith(prefix) for n in dtypes), prefix)
        self.assertEqual((self.config["model_type"], self.config["template"]), ("sa2va_chat", "phi3_chat"))
        tok = json.loads((self.ckpt / "tokenizer.json").read_text())
        ids = {a["content"]: a["id"] for a in tok["added_tokens"]}
        self.assertEqual((ids["<img>"], ids["<IMG_CONTEXT>"], ids["[SEG]"], ids["</vp>"]), (151665, 151667, 151674, 151678))

    def test_manifest(self):
        for dtype, bundle in self.bundles.items():
            m = json.loads((bundle / "model.json").read_text())
            self.assertEqual((m["format"], m["architecture"], m["dtype"]), (2, "unibiomed", dtype))
            self.assertTrue(m["demonstration_only"])
            self.assertEqual(m["source"]["checkpoint_sha256"], sha256(self.ckpt / "model.safetensors"))
            self.assertEqual(m["source"]["config_sha256"], sha256(self.ckpt / "config.json"))
            self.assertEqual(m["template"], "<|user|>\n{input}<|end|>\n<|assistant|>\n")
            self.assertEqual(m["image"]["tokens_per_tile"], 256)
            self.assertEqual(m["llm"], {"hidden_size": 64, "layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 16,
                                        "vocab_size": 151679, "max_positions": 32768})
            self.assertEqual(m["special_token_ids"], {"<img>": 151665, "</img>": 151666, "<IMG_CONTEXT>": 151667,
                                                      "[SEG]": 151674, "eos": 151645, "pad": 151643})
            self.assertEqual(len(m["labels"]), 9)
            self.assertEqual(sha256(bundle / "tokenizer.json"), sha256(self.ckpt / "tokenizer.json"))
            for part in PARTS:
                self.assertEqual(m["modules"][part]["sha256"], sha256(bundle / m["modules"][part]["file"]), part)

    def run_bundle(self, bundle, dtype=None):
        """Runs every part once; `dtype` moves the loaded modules first, as the runtime may."""
        parts = {p: torch.jit.load(str(bundle / f"{p}.pt")) for p in PARTS}
        if dtype is not None:
            for p in parts.values():
                p.to(dtype)
        lm = parts["language_model"]
        cache_dtype = lm.lm_head.weight.dtype
        ids = torch.tensor([[151665, 151667, 151667, 151666, 9707, 11, 1879], [151665, 151667, 151667, 151666, 3555, 374, 279]])
        embeds = lm.embed(ids)
        vis = parts["vision_encoder"](self.pixels)
        embeds[:, 1:3] = vis[:, :2]
        empty = torch.zeros(2, 2, 2, 0, 16, dtype=cache_dtype)
        _, hidden5, k, v = lm(embeds[:, :5], 0, empty, empty)
        _, hidden6, k, v = lm(embeds[:, 5:6], 5, k, v)  # two single-token steps on the cache
        logits7, hidden7, k, v = lm(embeds[:, 6:7], 6, k, v)
        prompt = parts["seg_projection"](hidden7[:, -1])
        embed, s0, s1 = parts["grounding_encoder"](self.image)
        mask, iou = parts["mask_decoder"](embed, s0, s1, prompt)
        return dict(vis=vis, embeds=embeds, logits7=logits7, hidden=torch.cat([hidden5, hidden6, hidden7], 1), k=k,
                    prompt=prompt, embed=embed, s0=s0, s1=s1, mask=mask, iou=iou)

    def test_contract_shapes(self):
        out = self.run_bundle(self.bundles["fp32"])
        shapes = {"vis": [2, 256, 64], "embeds": [2, 7, 64], "logits7": [2, 1, 151679], "hidden": [2, 7, 64],
                  "k": [2, 2, 2, 7, 16], "prompt": [2, 32], "embed": [2, 32, 64, 64], "s0": [2, 4, 256, 256],
                  "s1": [2, 8, 128, 128], "mask": [2, 1, 256, 256], "iou": [2]}
        for k, shape in shapes.items():
            self.assertEqual(list(out[k].shape), shape, k)
            self.assertEqual(out[k].dtype, torch.float32, k)
            self.assertTrue(torch.isfinite(out[k]).all(), k)

    def eager(self, model, out):
        """The same computation with the eager modules: one full forward without a cache."""
        sam = model.grounding_encoder.sam2_model
        logits, hidden = model.language_model.forward_full(out["embeds"])
        embed, s0, s1 = sam2_ref.GroundingEncoderPart(sam)(self.image)
        mask, iou = sam2_ref.MaskDecoderPart(sam)(embed, s0, s1, out["prompt"])
        return dict(vis=model.extract_feature(self.pixels), logits7=logits[:, -1:], hidden=hidden,
                    prompt=model.text_hidden_fcs(hidden[:, -1]), embed=embed, s0=s0, s1=s1, mask=mask, iou=iou)

    def check_parity(self, bundle, weights_dtype, tol, run_dtype=None):
        out = self.run_bundle(bundle, run_dtype)
        with torch.no_grad():
            ref = self.eager(reference(self.ckpt, weights_dtype), out)
        for k, r in ref.items():
            ok, msg = close(out[k], r, tol)
            self.assertTrue(ok, f"{bundle.name} {k}: {msg}")

    def test_parity_fp32(self):
        self.check_parity(self.bundles["fp32"], torch.float32, 1e-4)

    def test_parity_bf16_weights_run_in_fp32(self):  # the node's CPU path: bf16 bundle moved to fp32
        self.check_parity(self.bundles["bf16"], torch.bfloat16, 1e-4, run_dtype=torch.float32)

    def test_bf16_language_model_in_bf16(self):
        lm = torch.jit.load(str(self.bundles["bf16"] / "language_model.pt"))
        self.assertEqual(lm.lm_head.weight.dtype, torch.bfloat16)
        embeds = lm.embed(torch.tensor([[9707, 11, 1879, 0]]))
        empty = torch.zeros(2, 1, 2, 0, 16, dtype=torch.bfloat16)
        logits, hidden, k, _ = lm(embeds, 0, empty, empty)
        self.assertEqual((logits.dtype, hidden.dtype, k.dtype), (torch.float32, torch.float32, torch.bfloat16))
        with torch.no_grad():
            _, ref_hidden = reference(self.ckpt, torch.bfloat16).language_model.forward_full(embeds)
        ok, msg = close(hidden, ref_hidden, 0.05)
        self.assertTrue(ok, msg)

    def broken_checkpoint(self, name, edit):
        """A copy of the checkpoint folder whose tensors went through `edit(dict)`."""
        out = self.dir / name
        out.mkdir()
        for f in self.ckpt.iterdir():
            if f.name != "model.safetensors":
                (out / f.name).write_bytes(f.read_bytes())
        tensors = safetensors_io.load_file(self.ckpt / "model.safetensors")
        edit(tensors)
        safetensors_io.save_file(tensors, out / "model.safetensors")
        return out

    def assert_refused(self, ckpt, tensor, words):
        r = run(TOOLS / "convert_unibiomed.py", ckpt, self.dir / f"bundle-{ckpt.name}", "--dtype", "fp32")
        self.assertEqual(r.returncode, 2, r.stderr)
        line = next((l for l in r.stderr.splitlines() if tensor in l), "")
        self.assertTrue(line.startswith("convert_unibiomed: ") and words in line, r.stderr)
        self.assertFalse((self.dir / f"bundle-{ckpt.name}" / "model.json").exists())

    def test_missing_tensor(self):
        for name in ("language_model.model.layers.1.mlp.up_proj.weight",
                     "grounding_encoder.sam2_model.memory_attention.layers.0.self_attn.q_proj.weight"):
            ckpt = self.broken_checkpoint("missing-" + name, lambda t: t.pop(name))
            self.assert_refused(ckpt, name, "missing tensor")

    def test_unexpected_tensor(self):
        name = "language_model.model.layers.0.self_attn.o_proj.bias"
        ckpt = self.broken_checkpoint("extra", lambda t: t.update({name: torch.zeros(64)}))
        self.assert_refused(ckpt, name, "unexpected tensor")

    def test_wrong_shape(self):
        name = "mlp1.1.weight"
        ckpt = self.broken_checkpoint("shape", lambda t: t.update({name: t[name].t().contiguous()}))
        self.assert_refused(ckpt, name, "has shape [128, 64], expected [64, 128]")


if __name__ == "__main__":
    unittest.main()
