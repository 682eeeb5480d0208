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
    placement: str = ""  # variant "broad": how its centre was chosen (uniform, edge, mediastinum, dome, ...)


@dataclasses.dataclass
class Phantom:
    region: str            # CHEST | ABDOMEN | HEAD
    modality: str          # CT | MR
    volume: np.ndarray     # int16 HU+1024 for CT, uint16 for MR
    pixel_spacing: float
    slice_spacing: float
    lesions: list
    organs: dict = dataclasses.field(default_factory=dict)  # host organ name -> bool mask (CT abdomen)
    labelmap: np.ndarray = None  # variant "broad" only: uint8 organ labels (_IDS below), for check_spec.py


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


def make_phantom(seed, region=None, n_lesions=None, labels=None, slices=None, variant="default"):
    """One phantom study. `labels` forces lesion classes; otherwise 0-2 random ones of the region.
    variant "default": the generator the current model was trained on (fixed seeds stay bit-for-bit);
    "broad": the spec's whole range (see _make_broad below; its own random stream per seed)."""
    if variant == "broad":
        return _make_broad(seed, region, n_lesions, labels, slices)
    if variant != "default":
        raise ValueError(f"unknown phantom variant {variant!r}")
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


# ----------------------------------------------------------------------------------------------
# variant="broad": the spec's whole range, not one rendering of it (issue 15, item 1).
# The default variant above stays bit-for-bit as it was (tests and the demo use fixed seeds).
# Organs are 3D bodies with their own craniocaudal extent, drawn slice by slice as lobulated
# ellipses whose size, centre, angle and outline vary along z; a study's slab is placed on that
# anatomy, so it may start or end above or below an organ. Lesions are sized by their measured
# longest diameter over each class's full range (limits included) and placed everywhere the spec
# allows (organ edges, mediastinum, liver dome/posterior-right/left lobe, pancreatic head/body/
# tail, cut off by the first or last slice).
# ----------------------------------------------------------------------------------------------
_AIR, _FAT, _SOFT, _MED = 0, 1, 2, 13
_IDS = {"brain": 15, "ventricles": 14, "lung_r": 3, "lung_l": 4, "heart": 5, "liver": 6, "spleen": 7, "kidney_r": 8, "kidney_l": 9,
        "pancreas": 10, "aorta": 11, "bone": 12, "mediastinum": _MED}
_BROAD_ORDER = ("lung_r", "lung_l", "mediastinum", "heart", "liver", "spleen", "kidney_r", "kidney_l", "pancreas",
                "aorta", "bone")


def _harmonics(rng, amp, kmax=5):
    """Outline modulation: (k, amplitude, phase, phase drift over the organ's length)."""
    return [(k, amp * rng.uniform(0, 1) / max(1.0, k - 1) ** 0.5, rng.uniform(0, 2 * np.pi), rng.uniform(-1.5, 1.5))
            for k in range(1, kmax + 1)]


def _part(rng, z0, z1, cy, cx, ry, rx, lob, pk=None, p=None, drift=10.0, ang=None):
    """One organ body: z range [z0, z1] (mm, anatomy), cross-section centre/radii (mm) at its widest."""
    return dict(z0=z0, z1=z1, pk=rng.uniform(0.3, 0.7) if pk is None else pk,
                p=rng.uniform(0.25, 0.7) if p is None else p, cy=cy, cx=cx, ry=ry, rx=rx,
                dy=rng.uniform(-drift, drift), dx=rng.uniform(-drift, drift),
                ang=rng.uniform(-0.5, 0.5) if ang is None else ang, dang=rng.uniform(-0.4, 0.4),
                harm=_harmonics(rng, lob))


def _section(part, z, yv, xv):
    """(row slice, col slice, bool mask) of a part's cross-section at anatomical z, or None."""
    if not part["z0"] <= z <= part["z1"]:
        return None
    u = (z - part["z0"]) / max(part["z1"] - part["z0"], 1e-6)
    pk = part["pk"]
    d = (u - pk) / (pk if u < pk else 1 - pk)
    s = max(0.0, 1 - d * d) ** part["p"]
    ry, rx = part["ry"] * s, part["rx"] * s
    px = abs(yv[1] - yv[0])
    if min(ry, rx) < 1.5 * px:
        return None
    cy, cx = part["cy"] + part["dy"] * (u - 0.5), part["cx"] + part["dx"] * (u - 0.5)
    a = part["ang"] + part["dang"] * (u - 0.5)
    Ry = 1.5 * np.hypot(ry * np.cos(a), rx * np.sin(a)) + px  # the box of the rotated, modulated outline
    Rx = 1.5 * np.hypot(ry * np.sin(a), rx * np.cos(a)) + px
    r0, r1 = np.searchsorted(yv, cy - Ry), np.searchsorted(yv, cy + Ry)
    c0, c1 = np.searchsorted(xv, cx - Rx), np.searchsorted(xv, cx + Rx)
    if r1 <= r0 or c1 <= c0:
        return None
    yy = (yv[r0:r1, None] - cy).astype(np.float32)
    xx = (xv[None, c0:c1] - cx).astype(np.float32)
    ca, sa = np.float32(np.cos(a)), np.float32(np.sin(a))
    v, w = (yy * ca - xx * sa) / np.float32(ry), (yy * sa + xx * ca) / np.float32(rx)
    dist = np.sqrt(v * v + w * w)
    if part["harm"]:  # radius modulation sum_k amp_k cos(k theta + phase_k), via powers of e^{i theta}
        e = (w + 1j * v).astype(np.complex64) / np.maximum(dist, np.float32(1e-6))
        ek, mod = np.ones_like(e), np.ones(dist.shape, np.float32)
        for k, amp, ph, rate in part["harm"]:  # k = 1, 2, ... consecutively
            ek = ek * e
            phi = ph + rate * u
            mod += np.float32(amp * np.cos(phi)) * ek.real - np.float32(amp * np.sin(phi)) * ek.imag
        dist = dist / np.clip(mod, 0.55, 1.5)
    return slice(r0, r1), slice(c0, c1), dist <= 1.0


def _tube_section(tube, z, yv, xv):
    """Pancreas: discs along a head -> body -> tail centreline, each with its own z position."""
    out = None
    for (cy, cx, cz, r, h) in tube:
        if abs(z - cz) >= h:
            continue
        rr = r * np.sqrt(1 - ((z - cz) / h) ** 2)
        if rr < 1.0:
            continue
        r0, r1 = np.searchsorted(yv, cy - rr), np.searchsorted(yv, cy + rr)
        c0, c1 = np.searchsorted(xv, cx - rr), np.searchsorted(xv, cx + rr)
        if r1 <= r0 or c1 <= c0:
            continue
        disc = (yv[r0:r1, None] - cy) ** 2 + (xv[None, c0:c1] - cx) ** 2 <= rr * rr
        if out is None:
            out = np.zeros((len(yv), len(xv)), bool)
        out[r0:r1, c0:c1] |= disc
    return out


def _broad_ct_anatomy(rng, region, fov):
    """Anatomy parameters (mm) of a CT trunk; z is anatomical (slab placed later)."""
    a = rng.uniform(115, min(200, 0.47 * fov))
    b = rng.uniform(max(80, 0.55 * a), min(0.9 * a, 0.4 * fov))
    fat = rng.uniform(4, 30) if rng.random() < 0.85 else rng.uniform(2, 4)
    body = dict(a=a, b=b, fat=fat, cy=rng.uniform(-8, 8), harm=_harmonics(rng, rng.uniform(0, 0.03), 3))
    si = b - fat  # inner soft-tissue semi-axis (AP)
    sp_ry, sp_rx = rng.uniform(11, 20), rng.uniform(12, 22)
    sp_cy = min(rng.uniform(0.3, 0.62) * si, si - sp_ry - 6)
    ao_r = rng.uniform(7, 14)
    parts = {"bone": [dict(fixed=(sp_cy, rng.uniform(-3, 3), sp_ry, sp_rx))],
             "aorta": [dict(fixed=(sp_cy - sp_ry - rng.uniform(0, 12) - ao_r * rng.uniform(0.3, 1.0),
                                   rng.uniform(4, 28), ao_r, ao_r))]}
    if region == "CHEST":
        ll = rng.uniform(170, 300)
        for side, sx in (("lung_r", -1), ("lung_l", 1)):
            rx = (a - fat) * rng.uniform(0.2, 0.5)  # small to large lungs
            cx = sx * max(rx + 5, (a - fat) * rng.uniform(0.75, 1.02) - rx)  # lateral edge near the chest wall
            parts[side] = [_part(rng, rng.uniform(-20, 20), ll + rng.uniform(-15, 15), rng.uniform(-15, 15), cx,
                                 si * rng.uniform(0.45, 0.85), rx, rng.uniform(0, 0.12),
                                 pk=rng.uniform(0.15, 0.5), p=rng.uniform(0.25, 0.6), ang=rng.uniform(-0.3, 0.3))]
        # mediastinum: a soft-tissue band between the lungs, the full height of the chest
        parts["mediastinum"] = [_part(rng, -60, ll + 60, rng.uniform(-30, 10), rng.uniform(-5, 12), si * 1.3,
                                      rng.uniform(6, 32), rng.uniform(0, 0.08), pk=0.5, p=0.05, ang=rng.uniform(-0.15, 0.15))]
        hz0 = rng.uniform(-10, 0.25 * ll)
        hry = min(rng.uniform(30, 75), 0.55 * si)  # narrow to broad, round, also wider than tall; anterior
        parts["heart"] = [_part(rng, hz0, hz0 + rng.uniform(70, 150), -si * rng.uniform(0.15, 0.45) + hry * 0.2,
                                rng.uniform(-10, 35), hry, rng.uniform(0.8, 1.6) * hry, rng.uniform(0, 0.12),
                                ang=rng.uniform(-0.7, 0.7))]
        zlo, zhi = -20, ll + 15
    else:
        lv = rng.uniform(130, 220)
        parts["liver"] = [  # right lobe reaching the posterior-right wall, left lobe across the midline
            _part(rng, rng.uniform(-20, 0.2 * lv), lv, rng.uniform(-15, 25), -(a - fat) * rng.uniform(0.3, 0.5),
                  si * rng.uniform(0.6, 0.95), (a - fat) * rng.uniform(0.38, 0.62), rng.uniform(0, 0.12),
                  pk=rng.uniform(0.55, 0.85), p=rng.uniform(0.25, 0.6)),
            _part(rng, lv * rng.uniform(0.3, 0.65), lv * rng.uniform(0.8, 1.0), -si * rng.uniform(0.3, 0.6),
                  rng.uniform(-10, 0.25 * a), rng.uniform(15, 40), rng.uniform(30, 80), rng.uniform(0, 0.15),
                  ang=rng.uniform(-0.4, 0.4))]
        sl = rng.uniform(70, 130)
        sz = lv * rng.uniform(0.35, 0.75)
        parts["spleen"] = [_part(rng, sz - sl / 2, sz + sl / 2, si * rng.uniform(0.0, 0.45), (a - fat) * rng.uniform(0.5, 0.72),
                                 rng.uniform(30, 60), rng.uniform(15, 35), rng.uniform(0, 0.12), ang=rng.uniform(-0.9, 0.2))]
        kz = lv * rng.uniform(0.0, 0.45)
        for side, sx, dzk in (("kidney_r", -1, -rng.uniform(0, 30)), ("kidney_l", 1, 0.0)):
            kl, krx = rng.uniform(85, 130), rng.uniform(18, 32)
            parts[side] = [_part(rng, kz + dzk - kl / 2, kz + dzk + kl / 2, sp_cy + rng.uniform(-20, 10),
                                 sx * (sp_rx + krx + rng.uniform(8, 40)), rng.uniform(24, 40), krx, rng.uniform(0, 0.1),
                                 pk=rng.uniform(0.4, 0.6), ang=sx * rng.uniform(-0.2, 0.7))]
        pz, n = lv * rng.uniform(0.2, 0.55), 24
        head = (sp_cy - rng.uniform(40, 70), -rng.uniform(20, 50), pz - rng.uniform(0, 25))
        bodyc = (sp_cy - rng.uniform(50, 80), rng.uniform(-10, 15), pz)
        tail = (sp_cy - rng.uniform(5, 40), rng.uniform(40, max(45, 0.55 * (a - fat))), pz + rng.uniform(0, 30))
        r_h, r_b, r_t = rng.uniform(10, 19), rng.uniform(7, 13), rng.uniform(6, 12)
        h_h, h_b, h_t = rng.uniform(15, 35), rng.uniform(8, 22), rng.uniform(8, 20)
        tube = []
        for t in np.linspace(0, 1, n):  # quadratic Bezier head -> body -> tail
            q = [(1 - t) ** 2 * head[i] + 2 * t * (1 - t) * bodyc[i] + t * t * tail[i] for i in range(3)]
            r = r_h + (r_b - r_h) * min(1, 2 * t) if t < 0.5 else r_b + (r_t - r_b) * (2 * t - 1)
            h = h_h + (h_b - h_h) * min(1, 2 * t) if t < 0.5 else h_b + (h_t - h_b) * (2 * t - 1)
            tube.append((q[0], q[1], q[2], r * rng.uniform(0.85, 1.15), h))
        parts["pancreas"] = tube
        zlo = min(parts["kidney_r"][0]["z0"], parts["kidney_l"][0]["z0"], parts["liver"][0]["z0"]) - 10
        zhi = lv + 10
    return body, parts, (zlo, zhi)


def _zrange(parts, organ):
    ps = parts[organ]
    if organ == "pancreas":
        return min(c[2] - c[4] for c in ps), max(c[2] + c[4] for c in ps)
    if "fixed" in ps[0]:
        return -1e9, 1e9
    return min(p["z0"] for p in ps), max(p["z1"] for p in ps)


def _scale_z(parts, f, zlo, zhi):
    for organ, ps in parts.items():
        for i, p in enumerate(ps):
            if organ == "pancreas":
                ps[i] = (p[0], p[1], p[2] * f, p[3], p[4] * f)
            elif "fixed" not in p:
                p["z0"], p["z1"] = p["z0"] * f, p["z1"] * f
    return zlo * f, zhi * f


def _place_slab(rng, L, zlo, zhi, need):
    """Start of a slab of length L on the anatomy [zlo, zhi]: it may begin/end inside or beyond
    the organs; each (z0, z1) in need must overlap it by min(30 mm, 40 % of its length)."""
    lo, hi = sorted((zlo - 0.2 * L, zhi - 0.8 * L))
    best = None
    for _ in range(200):
        s0 = rng.uniform(lo, hi)
        ok = all(min(s0 + L, z1) - max(s0, z0) >= min(30.0, 0.4 * (z1 - z0), 0.8 * L) for z0, z1 in need)
        if ok:
            return s0
        if best is None:
            best = s0
    if need:  # centre the slab on the needed organs
        c = np.mean([(z0 + z1) / 2 for z0, z1 in need])
        return c - L / 2
    return best


def _broad_slab_geometry(rng, region, slices):
    if region == "HEAD":
        px, dz = rng.uniform(0.8, 1.0), rng.uniform(3.0, 5.0)
        nz = slices or int(rng.integers(30, 81))
    else:
        px, dz = rng.uniform(0.6, 0.9), rng.uniform(2.5, 5.0)
        nz = slices or int(rng.integers(40, 201))
    if rng.random() < 0.15:  # the spec's limits themselves
        px = [0.6, 0.9] [rng.integers(2)] if region != "HEAD" else [0.8, 1.0][rng.integers(2)]
    return px, dz, nz


def _broad_hosts(rng, labels):
    out = []
    for label in labels:
        hosts = LESIONS[label][0]
        out.append(hosts[rng.integers(len(hosts))])
    return out


def _make_broad_ct(rng, region, labels, slices):
    px, dz, nz = _broad_slab_geometry(rng, region, slices)
    fov, L = 512 * px, nz * dz
    body, parts, (zlo, zhi) = _broad_ct_anatomy(rng, region, fov)
    span = zhi - zlo
    if rng.random() < 0.5:  # organs scaled to the slab (as if the slab were chosen to cover them)
        f = L * rng.uniform(0.7, 1.3) / span
    else:  # anatomical size; a very long slab still shows the organs on a good part of it
        f = max(1.0, L / (1.25 * span))
    zlo, zhi = _scale_z(parts, f, zlo, zhi)
    hosts = _broad_hosts(rng, labels)
    s0 = _place_slab(rng, L, zlo, zhi, [_zrange(parts, h) for h in hosts])
    yv = ((np.arange(512) - 256) * px).astype(np.float64)
    xv = yv.copy()
    lab = np.zeros((nz, 512, 512), np.uint8)
    th = np.arctan2(yv[:, None] - body["cy"], xv[None, :])
    mod = 1.0
    for k, amp, ph, _ in body["harm"]:
        mod = mod + amp * np.cos(k * th + ph)
    yy, xx = (yv[:, None] - body["cy"]), xv[None, :]
    outer = np.sqrt((yy / body["b"]) ** 2 + (xx / body["a"]) ** 2) / mod
    inner = np.sqrt((yy / (body["b"] - body["fat"])) ** 2 + (xx / (body["a"] - body["fat"])) ** 2) / mod
    base = np.where(inner <= 1, _SOFT, np.where(outer <= 1, _FAT, _AIR)).astype(np.uint8)
    zs = s0 + np.arange(nz) * dz
    for k in range(nz):
        sl = base.copy()
        inside = sl == _SOFT
        for organ in _BROAD_ORDER:
            if organ not in parts:
                continue
            oid = _IDS[organ]
            if organ == "pancreas":
                m = _tube_section(parts[organ], zs[k], yv, xv)
                if m is not None:
                    sl[m & inside] = oid
                continue
            for p in parts[organ]:
                if "fixed" in p:
                    cy, cx, ry, rx = p["fixed"]
                    r0, r1 = np.searchsorted(yv, cy - ry), np.searchsorted(yv, cy + ry)
                    c0, c1 = np.searchsorted(xv, cx - rx), np.searchsorted(xv, cx + rx)
                    m = ((yv[r0:r1, None] - cy) / ry) ** 2 + ((xv[None, c0:c1] - cx) / rx) ** 2 <= 1
                    sub = sl[r0:r1, c0:c1]
                    sub[m & inside[r0:r1, c0:c1]] = oid
                    continue
                sec = _section(p, zs[k], yv, xv)
                if sec is None:
                    continue
                rs, cs, m = sec
                sub = sl[rs, cs]
                sub[m & inside[rs, cs]] = oid
        lab[k] = sl
    levels = np.zeros(16, np.float32)
    levels[_AIR], levels[_FAT], levels[_SOFT] = -1000, rng.uniform(-120, -80), rng.uniform(30, 50)
    levels[_MED] = rng.uniform(30, 50)
    lv = {"lung_r": rng.uniform(-900, -800), "lung_l": rng.uniform(-900, -800), "heart": rng.uniform(30, 50),
          "liver": rng.uniform(55, 65), "spleen": rng.uniform(45, 55), "kidney_r": rng.uniform(30, 40),
          "kidney_l": rng.uniform(30, 40), "pancreas": rng.uniform(40, 50), "bone": rng.uniform(400, 1000),
          "aorta": 40.0 if rng.random() < 0.5 else rng.uniform(150, 250)}
    for o, v in lv.items():
        levels[_IDS[o]] = v
    geo = dict(px=px, dz=dz, yv=yv, xv=xv, spine_y=parts["bone"][0]["fixed"][0], levels=lv)
    lesions, values = _broad_lesions(rng, labels, hosts, lab, geo)
    sigma = rng.uniform(8, 20)
    stored = np.empty(lab.shape, np.int16)
    for k in range(nz):
        hu = levels[lab[k]]
        for les, val in zip(lesions, values):
            if les.mask[k].any():
                hu[les.mask[k]] = val
        hu = hu + rng.standard_normal((512, 512), dtype=np.float32) * sigma
        stored[k] = np.clip(np.round(hu + 1024), -32768, 32767).astype(np.int16)
    organs = {}
    if region == "ABDOMEN":
        organs = {"liver": lab == _IDS["liver"], "pancreas": lab == _IDS["pancreas"],
                  "kidney": (lab == _IDS["kidney_r"]) | (lab == _IDS["kidney_l"])}
    return Phantom(region, "CT", stored, px, dz, lesions, organs, lab)


def _lesion_value(rng, label, host_level):
    return {"liver tumor": lambda: host_level - rng.uniform(20, 50),
            "kidney tumor": lambda: host_level + (rng.uniform(40, 80) if rng.random() < 0.5 else -rng.uniform(15, 30)),
            "pancreas tumor": lambda: host_level - rng.uniform(15, 30),
            "lung nodule": lambda: rng.uniform(-100, 60), "lung tumor": lambda: rng.uniform(20, 50),
            "brain tumor": lambda: rng.uniform(850, 1100)}[label]()


def _target_diameter(rng, dmin, dmax):
    u = rng.random()
    if u < 0.15:
        return dmin + rng.uniform(0, 0.06) * (dmax - dmin)
    if u < 0.3:
        return dmax - rng.uniform(0, 0.06) * (dmax - dmin)
    return rng.uniform(dmin, dmax)


def _lesion_shape(rng, px, dz, zc_off, target):
    """A lesion in a local box: returns (dk0, r0, c0, mask) with mask over slices dk0.. relative to
    the centre slice and rows/cols relative to the centre pixel, and its measured diameter."""
    ratio = (rng.uniform(0.6, 1.0), 1.0)
    rz_f = rng.uniform(0.45, 1.0)
    wob = rng.uniform(0.0, 0.14)  # smooth irregular (lobulated) outlines, never star-like
    ang = rng.uniform(0, np.pi)
    harm = [(k, wob * rng.uniform(-1, 1) / max(1, k - 1) ** 0.5, rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)]
    harm_phi = [(k, wob * 0.6 * rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi)) for k in (1, 2)]
    scale = target / 2
    for _ in range(4):
        r_in = scale
        ry, rx, rz = r_in * ratio[0], r_in * ratio[1], r_in * rz_f
        R = r_in * 1.55
        nr, nk = int(np.ceil(R / px)), int(np.ceil((rz * 1.55) / dz))
        kk = np.arange(-nk, nk + 1) * dz - np.clip(zc_off, -0.4 * rz, 0.4 * rz)  # the centre slice cuts it
        rr = np.arange(-nr, nr + 1) * px
        z, y, x = np.meshgrid(kk, rr, rr, indexing="ij")
        ca, sa = np.cos(ang), np.sin(ang)
        v, w, t = ((y * ca - x * sa) / ry).astype(np.float32), ((y * sa + x * ca) / rx).astype(np.float32), \
            (z / rz).astype(np.float32)
        rxy = np.sqrt(v * v + w * w)
        d = np.sqrt(rxy * rxy + t * t)
        e_th = (w + 1j * v).astype(np.complex64) / np.maximum(rxy, 1e-6)  # e^{i theta}
        e_ph = (rxy + 1j * t).astype(np.complex64) / np.maximum(d, 1e-6)  # e^{i phi}
        mod = np.ones(d.shape, np.float32)
        for e, hs in ((e_th, harm), (e_ph, harm_phi)):
            ek, kk_ = np.ones_like(e), 0
            for k, amp, ph in hs:  # amp cos(k angle + ph) = Re(amp e^{i ph} e^{i k angle})
                while kk_ < k:
                    ek, kk_ = ek * e, kk_ + 1
                mod += np.float32(amp * np.cos(ph)) * ek.real - np.float32(amp * np.sin(ph)) * ek.imag
        m = d / np.clip(mod, 0.7, 1.35) <= 1.0
        if m.sum() < 4:
            scale *= 1.3
            continue
        measured = _longest_diameter(m, px)
        if abs(measured - target) <= 0.02 * target + px:
            break
        scale *= target / measured
    # a lesion is a solid blob: its largest cross-section fills at least half the ellipse of its
    # measured diameter (a slice through a lobulated pole can otherwise leave thin arms)
    if m.sum(axis=(1, 2)).max() < 0.5 * np.pi / 4 * (measured / px) ** 2 * ratio[0]:
        measured = float("nan")
    return -nk, -nr, m, measured


def _host_pick(rng, label, host, lab, geo, mode):
    """A centre voxel (k, row, col) for a lesion of this class in host, by placement mode."""
    hid = _IDS[host]
    counts = geo["counts"][hid]
    ks = np.nonzero(counts)[0]
    if len(ks) == 0:
        return None
    yv, xv = geo["yv"], geo["xv"]
    if mode == "cut":  # lesion centre on (or next to) the slab's first or last slice, or the organ's end
        ends = [e for e in (0, lab.shape[0] - 1) if counts[e]] or [ks[0], ks[-1]]
        k = int(rng.choice(ends))
        k = min(max(k + int(rng.integers(-1, 2)), 0), lab.shape[0] - 1)
        if counts[k] == 0:
            k = int(ks[np.argmin(np.abs(ks - k))])
    elif mode == "dome" and host == "liver":
        top = ks[ks >= ks[-1] - max(2, len(ks) // 5)]
        k = int(rng.choice(top))
    elif mode == "posterior" and host == "liver":  # liver slices without the right kidney first
        kid = geo["counts"][_IDS["kidney_r"]]
        free = ks[kid[ks] == 0]
        k = int(rng.choice(free if len(free) else ks))
    else:
        k = int(rng.choice(ks, p=counts[ks] / counts[ks].sum()))
    sl = lab[k] == hid
    rows, cols = np.nonzero(sl)
    y, x = yv[rows], xv[cols]
    sel = np.ones(len(rows), bool)
    if host == "liver" and mode == "posterior":
        sel = (x < -20) & (y > geo["spine_y"] - 40)
    elif host == "liver" and mode == "left":
        sel = x > 0
    elif host == "pancreas" and mode in ("head", "body", "tail"):
        sel = {"head": x < -15, "body": (x >= -15) & (x <= 25), "tail": x > 25}[mode]
    elif mode in ("edge", "mediastinum"):
        nb = np.zeros_like(sl)
        other = (lab[k] == _MED) | (lab[k] == _IDS["heart"]) if mode == "mediastinum" else ~sl
        nb[1:] |= other[:-1]
        nb[:-1] |= other[1:]
        nb[:, 1:] |= other[:, :-1]
        nb[:, :-1] |= other[:, 1:]
        sel = nb[rows, cols]
    if sel.sum() == 0:
        sel = np.ones(len(rows), bool)
    i = int(rng.choice(np.nonzero(sel)[0]))
    return k, int(rows[i]), int(cols[i]), (float(y.mean()), float(x.mean()))


_MODES = {"liver tumor": ["uniform", "uniform", "edge", "dome", "posterior", "posterior", "left"],
          "kidney tumor": ["uniform", "edge", "edge"],
          "pancreas tumor": ["uniform", "head", "body", "tail"],
          "lung nodule": ["uniform", "uniform", "edge", "mediastinum"],
          "lung tumor": ["uniform", "edge", "mediastinum"],
          "brain tumor": ["uniform", "uniform", "edge"]}


def _broad_lesions(rng, labels, hosts, lab, geo):
    nz = lab.shape[0]
    counts = np.stack([np.bincount(lab[k].ravel(), minlength=16) for k in range(nz)])
    geo["counts"] = {i: counts[:, i] for i in range(16)}
    soft_ok = (lab >= _SOFT) & (lab != _IDS["bone"])  # never in air, the fat rim or bone
    taken = np.zeros(lab.shape, bool)
    lesions, values = [], []
    px, dz = geo["px"], geo["dz"]
    for label, host in zip(labels, hosts):
        all_hosts, frac, (dmin, dmax) = LESIONS[label]
        placed = None
        target = _target_diameter(rng, dmin, dmax)
        cut_first, shape = rng.random() < 0.2, None  # cut off by the slab's first or last slice
        for attempt in range(60):
            if attempt and attempt % 20 == 0:
                target, shape = _target_diameter(rng, dmin, dmax), None
            h = host if attempt < 45 or len(all_hosts) == 1 else all_hosts[rng.integers(len(all_hosts))]
            mode = "cut" if cut_first and attempt < 16 else _MODES[label][rng.integers(len(_MODES[label]))]
            pick = _host_pick(rng, label, h, lab, geo, mode)
            if pick is None:
                continue
            k, r, c, (my, mx) = pick
            if shape is None or attempt % 4 == 0:  # a new shape every 4th attempt; positions in between
                shape = _lesion_shape(rng, px, dz, rng.uniform(-0.5, 0.5) * dz, target)
            dk0, dr0, m, measured = shape
            if not dmin <= measured <= dmax:
                continue
            rad = measured / 2
            hid = _IDS[h]

            def fits(r, c):  # (box, visible mask) when the lesion centred at (k, r, c) keeps the rules
                k0, r0, c0 = k + dk0, r + dr0, c + dr0
                lz0, lz1 = max(k0, 0), min(k0 + m.shape[0], nz)
                # in-plane the lesion's box lies inside the image; only the slab's ends may cut it
                if lz1 <= lz0 or r0 < 0 or c0 < 0 or r0 + m.shape[1] > lab.shape[1] or c0 + m.shape[2] > lab.shape[2]:
                    return None
                vis = m[lz0 - k0:lz1 - k0]
                n_vis = int(vis.sum())
                if n_vis < 8 or n_vis < 0.35 * m.sum():
                    return None
                box = (slice(lz0, lz1), slice(r0, r0 + m.shape[1]), slice(c0, c0 + m.shape[2]))
                if (taken[box] & vis).any() or (lab[box][vis] == hid).sum() < frac * n_vis - 1e-9:
                    return None
                return (box, vis) if soft_ok[box][vis].all() else None

            got = None
            if mode in ("edge", "mediastinum"):
                # from the organ's edge toward its inside: how far depends on the share the class must
                # keep inside its host (exophytic kidney tumors, lung tumors on the mediastinum)
                if mode == "mediastinum":
                    vy, vx = 0.0, (-1.0 if h == "lung_r" else 1.0)
                else:
                    vy, vx = my - geo["yv"][r], mx - geo["xv"][c]
                    n = np.hypot(vy, vx) or 1.0
                    vy, vx = vy / n, vx / n
                if frac < 1.0:
                    t = rng.uniform(0.1, 0.6) if frac < 0.9 else rng.uniform(0.55, 1.0)
                    got = fits(int(round(r + vy * t * rad / px)), int(round(c + vx * t * rad / px)))
                else:  # wholly inside: slide in from 1.3 radii until it touches the edge
                    for step in np.arange(1.3 * rad / px, -1, -1.0):
                        g = fits(int(round(r + vy * step)), int(round(c + vx * step)))
                        if g is None and got is not None:
                            break
                        got = g or got
            else:
                got = fits(r, c)
            if got is None:
                continue
            box, vis = got
            mask = np.zeros(lab.shape, bool)
            mask[box] = vis
            placed = Lesion(label, h, mask, measured, mode)
            break
        if placed is None:
            continue
        taken |= placed.mask
        lesions.append(placed)
        values.append(np.float32(_lesion_value(rng, label, geo["levels"].get(placed.host, 0.0))))
    return lesions, values


def _make_broad_mr(rng, labels, slices):
    px, dz, nz = _broad_slab_geometry(rng, "HEAD", slices)
    L = nz * dz
    hh = rng.uniform(65, 100)  # half the head's craniocaudal extent
    hh = L / 2 * rng.uniform(0.6, 1.25) if rng.random() < 0.5 else max(hh, L / 2.5)
    shell = rng.uniform(4, 13)
    cy, ry, rx = rng.uniform(-8, 8), rng.uniform(75, 105), rng.uniform(58, 82)
    head = _part(rng, -hh, hh, cy, 0.0, ry, rx, rng.uniform(0, 0.05), pk=rng.uniform(0.35, 0.6), p=rng.uniform(0.3, 0.6),
                 drift=6, ang=rng.uniform(-0.1, 0.1))
    head["dang"] *= 0.2
    brain = dict(head, z0=-hh + shell, z1=hh - shell, ry=ry - shell, rx=rx - shell)
    vz, vh = rng.uniform(-0.15, 0.25) * hh, rng.uniform(12, 35)
    vy, vry, vrx = cy - rng.uniform(0, 15), rng.uniform(10, 32), rng.uniform(2.5, 10)
    vents = [_part(rng, vz - vh, vz + vh, vy, sx * rng.uniform(3 + vrx * 0.5, 16), vry, vrx, rng.uniform(0, 0.1),
                   drift=5, ang=sx * rng.uniform(-0.35, 0.1)) for sx in (-1, 1)]
    hosts = _broad_hosts(rng, labels)
    s0 = _place_slab(rng, L, -hh, hh, [(-0.8 * hh, 0.8 * hh)] * bool(labels))
    yv = ((np.arange(256) - 128) * px).astype(np.float64)
    lab = np.zeros((nz, 256, 256), np.uint8)
    for k in range(nz):
        z = s0 + k * dz
        for part, oid in [(head, _FAT), (brain, _IDS["brain"])] + [(v, _IDS["ventricles"]) for v in vents]:
            sec = _section(part, z, yv, yv)
            if sec is None:
                continue
            rs, cs, m = sec
            sub = lab[k][rs, cs]
            inside = {_FAT: True, _IDS["brain"]: sub == _FAT}.get(oid, sub == _IDS["brain"])
            sub[m & inside] = oid
    levels = np.zeros(16, np.float32)
    levels[_FAT], levels[_IDS["brain"]] = rng.uniform(250, 350), rng.uniform(500, 600)
    levels[_IDS["ventricles"]] = rng.uniform(150, 220)
    geo = dict(px=px, dz=dz, yv=yv, xv=yv, spine_y=0.0, levels={})
    lesions, values = _broad_lesions(rng, labels, hosts, lab, geo)
    sigma = rng.uniform(10, 25)
    img = levels[lab]
    for les, val in zip(lesions, values):
        img[les.mask] = val
    img += rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return Phantom("HEAD", "MR", np.clip(np.round(img), 0, 65535).astype(np.uint16), px, dz, lesions, {}, lab)


def _make_broad(seed, region, n_lesions, labels, slices):
    rng = np.random.default_rng([seed, 15])  # a stream of its own: never the default variant's
    region = region or ["CHEST", "ABDOMEN", "HEAD"][rng.integers(3)]
    if labels is None:
        n_lesions = rng.integers(3) if n_lesions is None else n_lesions
        labels = [REGION_CLASSES[region][rng.integers(len(REGION_CLASSES[region]))] for _ in range(n_lesions)]
    if region == "HEAD":
        return _make_broad_mr(rng, list(labels), slices)
    return _make_broad_ct(rng, region, list(labels), slices)
