"""Synthetic phantom studies following ../shared/docs/PHANTOMS.md (CT chest, CT abdomen, MR head,
0-2 lesions of the spec's classes). Returns volumes in stored units plus per-lesion masks, so the
same code feeds the demo, the tests and the mini model's training.

Coordinates: volume[z, row, col]; rows run anterior -> posterior, columns patient right -> left
(image left = patient right, HFS axial), z runs inferior -> superior.
"""
import dataclasses

import numpy as np

LESIONS = {  # label: (host organs, min fraction inside host, diameter range mm)
    "liver tumor": (("liver",), 0.9, (10, 60)),
    "kidney tumor": (("kidney_r", "kidney_l"), 0.6, (15, 50)),
    "pancreas tumor": (("pancreas",), 0.9, (10, 35)),
    "lung nodule": (("lung_r", "lung_l"), 1.0, (5, 30)),
    "lung tumor": (("lung_r", "lung_l"), 0.6, (30, 70)),
    "brain tumor": (("brain",), 1.0, (15, 50)),
}
PAINT_ORDER = ("lung_r", "lung_l", "heart", "liver", "spleen", "kidney_r", "kidney_l", "pancreas", "aorta", "bone")
REGION_CLASSES = {"CHEST": ["lung nodule", "lung tumor"],
                  "ABDOMEN": ["liver tumor", "kidney tumor", "pancreas tumor"],
                  "HEAD": ["brain tumor"]}


@dataclasses.dataclass
class Lesion:
    label: str
    host: str
    mask: np.ndarray  # bool, same shape as the volume
    diameter_mm: float


@dataclasses.dataclass
class Phantom:
    region: str            # CHEST | ABDOMEN | HEAD
    modality: str          # CT | MR
    volume: np.ndarray     # int16 HU+1024 for CT, uint16 for MR
    pixel_spacing: float
    slice_spacing: float
    lesions: list
    organs: dict = dataclasses.field(default_factory=dict)  # host organ name -> bool mask (CT abdomen)


def _grid(shape, px, dz):
    z, y, x = np.meshgrid(np.arange(shape[0]) * dz, (np.arange(shape[1]) - shape[1] / 2) * px,
                          (np.arange(shape[2]) - shape[2] / 2) * px, indexing="ij")
    return z, y, x


def _ellipsoid(z, y, x, c, r, rng=None, wobble=0.0):
    """Smooth irregular ellipsoid: radius modulated by low-order angular harmonics."""
    dz, dy, dx = (z - c[0]) / r[0], (y - c[1]) / r[1], (x - c[2]) / r[2]
    d = np.sqrt(dz * dz + dy * dy + dx * dx)
    if rng is not None and wobble > 0:
        theta, phi = np.arctan2(dy, dx), np.arctan2(dz, np.hypot(dx, dy))
        mod = 1.0
        for k in (2, 3):
            mod = mod + wobble * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 6.3)) \
                      + wobble * rng.uniform(-1, 1) * np.cos(k * phi + rng.uniform(0, 6.3))
        d = d / np.clip(mod, 0.6, 1.4)
    return d <= 1.0


def _ct_organs(rng, region, z, y, x, length, fov):
    """Boolean masks of the organs of a CT trunk (cylindrical along z, tapering at the ends)."""
    a, b = min(rng.uniform(140, 175), 0.47 * fov), rng.uniform(95, 125)
    ell = lambda cy, cx, ry, rx: ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
    organs = {"body": ell(0, 0, b, a)}
    fat = rng.uniform(8, 20)
    organs["soft"] = ell(0, 0, b - fat, a - fat)
    spine_y = b * rng.uniform(0.5, 0.62)
    organs["bone"] = ell(spine_y, 0, rng.uniform(14, 19), rng.uniform(15, 20))
    organs["aorta"] = ell(spine_y - rng.uniform(26, 34), rng.uniform(12, 24), 11, 11)
    zc, zr = length / 2, length / 2 * rng.uniform(1.0, 1.3)
    taper = np.sqrt(np.clip(1 - ((z - zc) / zr) ** 2, 0.05, 1))  # organs shrink toward the ends
    if region == "CHEST":
        for side, sx in (("lung_r", -1), ("lung_l", 1)):
            organs[side] = ell(rng.uniform(-5, 10), sx * a * rng.uniform(0.42, 0.5),
                               b * rng.uniform(0.6, 0.72) * taper, a * rng.uniform(0.3, 0.36) * taper)
        organs["heart"] = ell(-b * rng.uniform(0.15, 0.3), rng.uniform(5, 20), b * 0.45 * taper, a * 0.25 * taper)
        organs["lung_r"] &= ~organs["heart"]
        organs["lung_l"] &= ~organs["heart"]
    else:
        organs["liver"] = ell(-rng.uniform(0, 25), -a * rng.uniform(0.38, 0.48), b * rng.uniform(0.55, 0.7) * taper,
                              a * rng.uniform(0.38, 0.48) * taper)
        organs["spleen"] = ell(rng.uniform(0, 20), a * rng.uniform(0.55, 0.65), b * 0.3 * taper, a * 0.16 * taper)
        for side, sx in (("kidney_r", -1), ("kidney_l", 1)):
            organs[side] = ell(spine_y - rng.uniform(0, 10), sx * rng.uniform(60, 80), rng.uniform(28, 36) * taper,
                               rng.uniform(22, 28) * taper)
        organs["pancreas"] = ell(spine_y - rng.uniform(45, 60), rng.uniform(-5, 15), rng.uniform(10, 14) * taper,
                                 rng.uniform(55, 75) * taper)
        organs["liver"] &= ~organs["pancreas"]
    for k in list(organs):
        if k not in ("body", "soft"):
            organs[k] &= organs["soft"]
    # Each organ's mask is what shows of it: organs painted later cover earlier ones (a liver tumor
    # must sit in liver tissue, not where the kidney is drawn over the liver's ellipse).
    present = [o for o in PAINT_ORDER if o in organs]
    for i, organ in enumerate(present):
        for later in present[i + 1:]:
            organs[organ] &= ~organs[later]
    return organs


def _longest_diameter(mask, px):
    """Longest in-plane diameter (mm) of a lesion mask, as a reader measures it: the largest
    caliper width over 36 directions on any slice (the node measures its masks the same way)."""
    angles = np.linspace(0, np.pi, 36, endpoint=False)
    axes = np.stack([np.sin(angles), np.cos(angles)])
    best = 0.0
    for k in np.unique(np.nonzero(mask)[0]):
        proj = np.argwhere(mask[k]) @ axes
        best = max(best, float((proj.max(0) - proj.min(0)).max()))
    return (best + 1) * px


def _place_lesion(rng, label, organs, z, y, x, px, dz, taken):
    hosts, frac, (dmin, dmax) = LESIONS[label]
    host = hosts[rng.integers(len(hosts))]
    where = np.argwhere(organs[host])
    if len(where) == 0:
        return None
    for _ in range(40):
        diameter = rng.uniform(dmin, dmax)
        rad = diameter / 2 * np.array([rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0), 1.0])
        rng.shuffle(rad[1:])
        zi, yi, xi = where[rng.integers(len(where))]
        c = (zi * dz, (yi - organs[host].shape[1] / 2) * px, (xi - organs[host].shape[2] / 2) * px)
        m = _ellipsoid(z, y, x, c, rad, rng, wobble=0.08)
        n = m.sum()
        if n < 8 or (m & taken).any():
            continue
        if (m & organs[host]).sum() / n < frac or (m & organs["soft"]).sum() != n:
            continue
        # The irregular outline can reach beyond the drawn radius: the class's size range (and the
        # lung nodule/tumor boundary) applies to the lesion as it is drawn, measured like a reader would.
        measured = _longest_diameter(m, px)
        if dmin <= measured <= dmax:
            return Lesion(label, host, m, measured)
    return None


def _add_lesions(rng, labels, organs, z, y, x, px, dz, image, value_of):
    """Places each lesion (never overlapping another) and paints it with value_of(lesion)."""
    lesions, taken = [], np.zeros(z.shape, bool)
    for label in labels:
        les = _place_lesion(rng, label, organs, z, y, x, px, dz, taken)
        if les is None:
            continue
        taken |= les.mask
        image[les.mask] = value_of(les)
        lesions.append(les)
    return lesions


def make_phantom(seed, region=None, n_lesions=None, labels=None, slices=None):
    """One phantom study. `labels` forces lesion classes; otherwise 0-2 random ones of the region."""
    rng = np.random.default_rng(seed)
    region = region or ["CHEST", "ABDOMEN", "HEAD"][rng.integers(3)]
    if labels is None:
        n_lesions = rng.integers(3) if n_lesions is None else n_lesions
        labels = [REGION_CLASSES[region][rng.integers(len(REGION_CLASSES[region]))] for _ in range(n_lesions)]
    if region == "HEAD":
        return _mr_head(rng, labels, slices)
    px, dz = rng.uniform(0.6, 0.9), rng.uniform(2.5, 5.0)
    nz = slices or int(rng.integers(40, 201))
    z, y, x = _grid((nz, 512, 512), px, dz)
    organs = _ct_organs(rng, region, z, y, x, nz * dz, 512 * px)
    hu = np.full(z.shape, -1000.0, dtype=np.float32)
    hu[organs["body"]] = rng.uniform(-120, -80)
    hu[organs["soft"]] = rng.uniform(30, 50)
    levels = {"bone": rng.uniform(400, 1000), "aorta": 40 if rng.random() < 0.5 else rng.uniform(150, 250),
              "lung_r": rng.uniform(-900, -800), "lung_l": None, "heart": rng.uniform(30, 50),
              "liver": rng.uniform(55, 65), "spleen": rng.uniform(45, 55), "kidney_r": rng.uniform(30, 40),
              "kidney_l": None, "pancreas": rng.uniform(40, 50)}
    levels["lung_l"], levels["kidney_l"] = levels["lung_r"], levels["kidney_r"]
    for organ in PAINT_ORDER:
        if organ in organs:
            hu[organs[organ]] = levels[organ]
    def lesion_hu(les):  # every class's draw is taken, as the training data were generated
        host_hu = levels[les.host]
        return {"liver tumor": host_hu - rng.uniform(20, 50),
                "kidney tumor": host_hu + (rng.uniform(40, 80) if rng.random() < 0.5 else -rng.uniform(15, 30)),
                "pancreas tumor": host_hu - rng.uniform(15, 30),
                "lung nodule": rng.uniform(-100, 60), "lung tumor": rng.uniform(20, 50)}[les.label]
    lesions = _add_lesions(rng, labels, organs, z, y, x, px, dz, hu, lesion_hu)
    hu += rng.normal(0, rng.uniform(8, 20), hu.shape).astype(np.float32)
    stored = np.clip(np.round(hu + 1024), -32768, 32767).astype(np.int16)
    hosts = {"liver": organs.get("liver"), "pancreas": organs.get("pancreas"),
             "kidney": organs["kidney_r"] | organs["kidney_l"] if "kidney_r" in organs else None}
    return Phantom(region, "CT", stored, px, dz, lesions, {k: m for k, m in hosts.items() if m is not None})


def _mr_head(rng, labels, slices):
    px, dz = rng.uniform(0.8, 1.0), rng.uniform(3.0, 5.0)
    nz = slices or int(rng.integers(30, 81))
    z, y, x = _grid((nz, 256, 256), px, dz)
    zc = nz * dz / 2
    ry, rx, rz = rng.uniform(85, 100), rng.uniform(65, 78), max(nz * dz / 2 * 1.1, 60)
    c = (zc, rng.uniform(-5, 5), 0)
    head = _ellipsoid(z, y, x, c, (rz, ry, rx))
    brain = _ellipsoid(z, y, x, c, (rz - 8, ry - 8, rx - 8))
    vent = (_ellipsoid(z, y, x, (zc, c[1] - 5, -8), (rz * 0.25, 22, 5)) |
            _ellipsoid(z, y, x, (zc, c[1] - 5, 8), (rz * 0.25, 22, 5)))
    img = np.zeros(z.shape, np.float32)
    img[head] = rng.uniform(250, 350)
    img[brain] = rng.uniform(500, 600)
    img[vent & brain] = rng.uniform(150, 220)
    organs = {"brain": brain & ~vent, "soft": brain}
    lesions = _add_lesions(rng, labels, organs, z, y, x, px, dz, img, lambda les: rng.uniform(850, 1100))
    img += rng.normal(0, rng.uniform(10, 25), img.shape).astype(np.float32)
    stored = np.clip(np.round(img), 0, 65535).astype(np.uint16)
    return Phantom("HEAD", "MR", stored, px, dz, lesions)
