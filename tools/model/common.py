"""Shared pieces of the mini model's tooling: vocabulary, prompts, preprocessing (the same rules
the C++ pipeline applies; see docs/model-bundle.md)."""
import numpy as np

INPUT_SIZE = 256
LABELS = ["liver tumor", "kidney tumor", "pancreas tumor", "lung nodule", "lung tumor", "brain tumor"]
SNOMED = {  # finding type, anatomic region (PHANTOMS.md)
    "liver tumor": ("108369006", "Neoplasm", "10200004", "Liver"),
    "kidney tumor": ("108369006", "Neoplasm", "64033007", "Kidney"),
    "pancreas tumor": ("108369006", "Neoplasm", "15776009", "Pancreas"),
    "lung nodule": ("27925004", "Nodule", "39607008", "Lung"),
    "lung tumor": ("108369006", "Neoplasm", "39607008", "Lung"),
    "brain tumor": ("108369006", "Neoplasm", "12738006", "Brain"),
}
PROMPTS = {
    "recognition": [
        "Can you identify any abnormality within this {modality} image ? Please respond with segmentation masks .",
        "Can we observe any signs of abnormality ? Please respond with interleaved segmentation masks for the corresponding parts .",
    ],
    "referring": ["Please segment {label} in this {modality} image ."],
    # region-aware description: the lesion's box drawn on the image (value BOX_VALUE), as the paper does
    "description": ["Please describe the {label} in the box ."],
}
ORGANS = ["liver", "kidney", "pancreas"]  # referring-segmentation targets that host a lesion class
HOSTS = {"liver tumor": "liver", "kidney tumor": "kidney", "pancreas tumor": "pancreas"}
BOX_VALUE = 6.0  # outside every preprocessed intensity (CT [0, 1], MR z-scores)
DESCRIPTION_WORDS = ["hypodense", "enhancing", "solid", "hyperintense", "lesion", "in", "the", "right", "left",
                     "hepatic", "lobe", "pancreatic", "head", "body/tail", "cerebral", "hemisphere"]
SPECIAL = ["<pad>", "<bos>", "<eos>", "<image>", "[SEG]"]
ANSWER_WORDS = ["It", "is", ".", ",", "No", "findings", "liver", "kidney", "pancreas", "lung", "brain",
                "tumor", "nodule"]


def build_vocab():
    words = list(SPECIAL) + list(ANSWER_WORDS)
    for templates in PROMPTS.values():
        for t in templates:
            for w in t.replace("{modality}", "CT MR").replace("{label}", "").split():
                if w not in words:
                    words.append(w)
    return words + [w for w in DESCRIPTION_WORDS if w not in words]  # appended: older ids stay valid


VOCAB = build_vocab()
TOK = {w: i for i, w in enumerate(VOCAB)}


def encode(text):
    return [TOK[w] for w in text.split()]


def answer_text(labels):
    """Per-slice answer: one [SEG] per lesion class present, in vocabulary order."""
    present = [l for l in LABELS if l in labels]
    if not present:
        return "No findings"
    return "It is " + " , ".join(f"[SEG] . {l}" for l in present)


def description_text(label, side, enhancing=False):
    """Reference wording of a lesion's description (PHANTOMS.md report wording; size is measured
    from the mask by the node and not generated): '<density> lesion in the <site>'."""
    organ = label.split()[0]
    density = {"liver": "hypodense", "pancreas": "hypodense", "lung": "solid", "brain": "hyperintense",
               "kidney": "enhancing" if enhancing else "hypodense"}[organ]
    site = {"liver": f"{side} hepatic lobe", "kidney": f"{side} kidney", "lung": f"{side} lung",
            "brain": f"{side} cerebral hemisphere",
            "pancreas": "pancreatic head" if side == "right" else "pancreatic body/tail"}[organ]
    return f"{density} lesion in the {site}"


def box_around(mask, margin=3):
    """Inclusive (y0, x0, y1, x1) bounds of a mask's pixels plus a margin (pipeline/analyzer.cpp
    draws the same box: 3 pixels of margin, a 2-pixel outline, at input resolution)."""
    ys, xs = (mask > 0.5).nonzero(as_tuple=True)
    return int(ys.min()) - margin, int(xs.min()) - margin, int(ys.max()) + margin, int(xs.max()) + margin


def draw_box(image, y0, x0, y1, x1, width=2):
    """Draws an ROI box outline (inclusive pixel bounds) onto a (S, S) tensor/array in place."""
    s = image.shape[-1]
    y0, x0, y1, x1 = max(0, y0), max(0, x0), min(s - 1, y1), min(s - 1, x1)
    image[..., y0:y0 + width, x0:x1 + 1] = BOX_VALUE
    image[..., y1 - width + 1:y1 + 1, x0:x1 + 1] = BOX_VALUE
    image[..., y0:y1 + 1, x0:x0 + width] = BOX_VALUE
    image[..., y0:y1 + 1, x1 - width + 1:x1 + 1] = BOX_VALUE
    return image


def window_for(body_part):
    return (-1000.0, 500.0) if body_part.upper() in ("CHEST", "LUNG", "THORAX") else (-175.0, 250.0)


def preprocess_volume(volume, modality, body_part):
    """volume: float32 (z, y, x) in HU (CT) or raw units (MR) -> float32 in [0, 1] (CT) / z-scored (MR)."""
    v = volume.astype(np.float32)
    if modality == "CT":
        lo, hi = window_for(body_part)
        return np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    mask = v > 0
    mean = v[mask].mean() if mask.any() else v.mean()
    std = v[mask].std() if mask.any() else v.std()
    return (v - mean) / max(std, 1e-6)
