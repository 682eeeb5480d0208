"""Reference inference on an exported bundle: the exact algorithm the C++ runtime implements
(pipeline/), used for evaluation and the parity test.

Per slice: visual tokens + "<bos> prompt" -> greedy decoding with a KV cache -> text; the hidden
state of each generated [SEG] -> seg projection -> mask decoder over the grounding features ->
mask logits at half the input size. (The per-study assembly that follows lives in
pipeline/analyzer.cpp: on abdominal CT the referring prompt asked per lesion class on every slice
as well (referring_sweep), masks resized bilinearly to the native grid, [SEG] prompts carried to the
neighbouring slices the answers skipped (propagate_slices), one lesion map over all labels,
3D connected components each named by the label with the most probability mass in it (from the
recognition answers where they cover it, else from the referring sweep), lung
lesions named by size, components on fewer than `min_slices` slices or, on CT, isodense to the
tissue around them (min_contrast_hu) and, for classes with a host organ, to that organ
(min_host_contrast_hu) dropped, then measured; per
lesion, on its key slice, the host organs segmented by referring prompts re-name it and the
region-aware description prompt on the boxed slice describes it.)
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F


class Bundle:
    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.manifest = json.loads((self.path / "model.json").read_text())
        self.vocab = json.loads((self.path / self.manifest["tokenizer"]).read_text())["vocab"]
        self.tok = {w: i for i, w in enumerate(self.vocab)}
        self.parts = {n: torch.jit.load(str(self.path / m["file"])).eval() for n, m in self.manifest["modules"].items()}
        self.m = self.manifest

    def encode(self, text):
        return [self.tok[w] for w in text.split()]

    @torch.inference_mode()
    def run_slices(self, images, prompt):
        """images: float tensor (N,1,S,S) preprocessed. Returns [(text, [(label, logits (H,W))])]."""
        P = self.parts
        n = images.shape[0]
        vis, _ = P["vision_encoder"](images)
        pix = P["grounding_encoder"](images)
        ids = torch.tensor([[self.tok["<bos>"]] + self.encode(prompt)] * n)
        x = torch.cat([vis, P["language_model"].embed(ids)], 1)
        L, H, D = self.m["layers"], self.m["heads"], self.m["hidden_size"]
        empty = torch.zeros(L, n, H, 0, D // H)
        logits, hidden, k, v = P["language_model"](x, 0, empty, empty)
        pos = x.shape[1]
        nxt = logits[:, -1].argmax(-1)
        eos, seg = self.tok["<eos>"], self.tok["[SEG]"]
        tokens = [[] for _ in range(n)]
        seg_h = [[] for _ in range(n)]
        done = [False] * n
        for _ in range(self.m["max_new_tokens"]):
            for b in range(n):
                if not done[b]:
                    tokens[b].append(int(nxt[b]))
                    done[b] = int(nxt[b]) == eos
            if all(done):
                break
            logits, hidden, k, v = P["language_model"](P["language_model"].embed(nxt[:, None]), pos, k, v)
            pos += 1
            for b in range(n):
                if not done[b] and int(nxt[b]) == seg:
                    seg_h[b].append(hidden[b, 0])
            nxt = logits[:, -1].argmax(-1)
        out = []
        for b in range(n):
            words = [self.vocab[t] for t in tokens[b] if t != eos]
            text = " ".join(words)
            labels = parse_labels(words)
            masks = []
            for label, h in zip(labels, seg_h[b]):
                prompt_vec = P["seg_projection"](h[None])
                masks.append((label, P["mask_decoder"](pix[b:b + 1], prompt_vec)[0, 0]))
            out.append((text, masks))
        return out


def parse_labels(words):
    """The label named after each [SEG]: '[SEG] . liver tumor , [SEG] . kidney tumor'."""
    labels, i = [], 0
    while i < len(words):
        if words[i] == "[SEG]":
            j = i + 1
            if j < len(words) and words[j] == ".":
                j += 1
            name = []
            while j < len(words) and words[j] not in (",", "[SEG]", "."):
                name.append(words[j])
                j += 1
            labels.append(" ".join(name))
            i = j
        else:
            i += 1
    return labels
