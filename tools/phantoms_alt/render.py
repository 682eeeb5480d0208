#!/usr/bin/python3
"""A second, independent renderer of ../shared/docs/PHANTOMS.md (issue 15 item 1), written from
the spec alone as a validation set the mini model never trains on. Where the spec is silent it
makes other choices than tools/phantoms on purpose (see docs/model-card.md, "Second renderer"):

- anatomy as 3D bodies: star-shaped contours (superellipse x low-order Fourier lobulation that
  drifts with z) scaled by a craniocaudal profile, so kidneys, pancreas, spleen, heart and
  ventricles begin and end inside the volume; the pancreas is a tapered tube around a curved
  centre line; the liver a right lobe plus a left lobe crossing the midline;
- lesions as blobby implicit surfaces (a main ellipsoid plus 1-3 Gaussian lobes, radially
  perturbed, randomly oriented), sized by their measured longest in-plane (Feret) diameter,
  placed anywhere in the host (uniform, at its border, cut off by the first or last slice);
- intensities: one base value per structure inside the spec's range, spatially correlated
  3D texture and partial-volume edges on top, then the spec's Gaussian noise; MR with a mild
  bias field;
- its own DICOM writer (pydicom, 2.25 UUID-derived UIDs, instance 1 = most cranial slice,
  random file names, BodyPartExamined HEAD or BRAIN for MR).

usage: render.py OUT_DIR --seed N [--region CHEST|ABDOMEN|HEAD] [--lesions LABEL ...|none]
       [--slices N] [--check]
writes the study's DICOM files into OUT_DIR and the truth beside it: OUT_DIR.truth.npz
(`labels`: uint8 volume, 0 = background, k = lesion k, index 0 = lowest z, rows/columns as the
pixel data) and OUT_DIR.truth.json (lesions: label, diameters, host fraction, intensity, ...).
"""
import argparse
import datetime
import json
import math
import pathlib
import uuid

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

REGION_LABELS = {"CHEST": ["lung nodule", "lung tumor"],
                 "ABDOMEN": ["liver tumor", "kidney tumor", "pancreas tumor"],
                 "HEAD": ["brain tumor"]}
SIZE_MM = {"liver tumor": (10, 60), "kidney tumor": (15, 50), "pancreas tumor": (10, 35),
           "lung nodule": (5, 30), "lung tumor": (30, 70), "brain tumor": (15, 50)}
HOST_FRACTION = {"liver tumor": 0.90, "kidney tumor": 0.60, "pancreas tumor": 0.90, "lung nodule": 0.97,
                 "lung tumor": 0.60, "brain tumor": 0.97}
CT_RANGES = {"soft tissue": (30, 50), "fat": (-120, -80), "bone": (400, 1000), "aorta": (40, 250),
             "lung": (-900, -800), "heart": (30, 50), "liver": (55, 65), "spleen": (45, 55),
             "kidney": (30, 40), "pancreas": (40, 50)}
MR_RANGES = {"shell": (250, 350), "brain": (500, 600), "ventricle": (150, 220)}
# organ ids of the label map
AIR, TISSUE, FAT, BONE, AORTA, LUNG_R, LUNG_L, HEART, MEDIAST, LIVER, SPLEEN, KIDNEY_R, KIDNEY_L, PANCREAS = range(14)
SHELL, BRAIN, VENTRICLE = 20, 21, 22
ORGAN_NAMES = {TISSUE: "soft tissue", FAT: "fat", BONE: "bone", AORTA: "aorta", LUNG_R: "lung", LUNG_L: "lung",
               HEART: "heart", MEDIAST: "soft tissue", LIVER: "liver", SPLEEN: "spleen", KIDNEY_R: "kidney",
               KIDNEY_L: "kidney", PANCREAS: "pancreas", SHELL: "shell", BRAIN: "brain", VENTRICLE: "ventricle"}
HOSTS = {"liver tumor": (LIVER,), "kidney tumor": (KIDNEY_R, KIDNEY_L), "pancreas tumor": (PANCREAS,),
         "lung nodule": (LUNG_R, LUNG_L), "lung tumor": (LUNG_R, LUNG_L), "brain tumor": (BRAIN,)}


# ---------------------------------------------------------------- shapes
class Star:
    """A star-shaped 3D body: in-plane a rotated superellipse radius times (1 + Fourier lobulation),
    the lobulation interpolated between two sets along z, scaled by a craniocaudal profile."""

    def __init__(self, rng, cx, cy, a, b, p, rot, z0, z1, lob=0.05, taper=(2.0, 2.0), cut=None, drift=(0, 0)):
        self.cx, self.cy, self.a, self.b, self.p, self.rot = cx, cy, a, b, p, rot
        self.z0, self.z1, self.taper, self.cut, self.drift = z0, z1, taper, cut, drift
        k = np.arange(2, 7)
        self.coef = [rng.uniform(0, lob, len(k)) / k ** 0.6 for _ in range(2)]
        self.phase = [rng.uniform(0, 2 * np.pi, len(k)) for _ in range(2)]
        self.k = k

    def scale(self, z):
        if z <= self.z0 or z >= self.z1:
            return 0.0
        t = (z - self.z0) / (self.z1 - self.z0)  # 0 caudal .. 1 cranial
        lo, hi = self.taper
        s_hi = (1 - max(0.0, (t - 0.5) / 0.5) ** hi) ** (1 / hi)
        s_lo = (1 - max(0.0, (0.5 - t) / 0.5) ** lo) ** (1 / lo)
        return float(s_hi * s_lo)

    def reach(self, z):
        """(cx, cy, radius) bounding the cross-section at z."""
        t = (z - self.z0) / (self.z1 - self.z0)
        cx, cy = self.cx + self.drift[0] * (t - 0.5), self.cy + self.drift[1] * (t - 0.5)
        return cx, cy, self.scale(z) * max(self.a, self.b) * (1 + sum(c.sum() for c in self.coef)) * 1.45 + 3

    def sdf(self, z, X, Y):
        """Approximate signed distance (mm, negative inside) on the grid X, Y at height z."""
        key = (z, X.shape, float(X[0, 0]), float(Y[0, 0]))
        if getattr(self, "_memo", (None,))[0] == key:
            return self._memo[1]
        d = self._sdf(z, X, Y)
        self._memo = (key, d)
        return d

    def _sdf(self, z, X, Y):
        s = self.scale(z)
        if s <= 0.02:
            return np.full(X.shape, 1e3, np.float32)
        t = (z - self.z0) / (self.z1 - self.z0)
        cx, cy = self.cx + self.drift[0] * (t - 0.5), self.cy + self.drift[1] * (t - 0.5)
        dx, dy = X - cx, Y - cy
        r = np.hypot(dx, dy)
        w = (dx + 1j * dy).astype(np.complex64) / (r + 1e-6) * np.complex64(np.exp(-1j * self.rot))
        c, sn = np.abs(w.real), np.abs(w.imag)
        R = (((c / self.a) ** self.p + (sn / self.b) ** self.p) + 1e-12) ** (-1 / self.p)
        coef = [(1 - t) * self.coef[0][i] * np.exp(1j * self.phase[0][i]) + t * self.coef[1][i] * np.exp(1j * self.phase[1][i])
                for i in range(len(self.k))]
        wk = w * w  # k = 2 .. 6
        acc = np.zeros(w.shape, np.complex64)
        for i in range(len(self.k)):
            acc += np.complex64(coef[i]) * wk
            wk = wk * w
        lob = acc.real
        d = (r - s * R * (1 + lob)).astype(np.float32)
        if self.cut is not None:  # a half-plane (flat medial side of a lung): nx*x + ny*y <= c
            nx, ny, cc = self.cut
            d = np.maximum(d, (nx * X + ny * Y - cc).astype(np.float32))
        return d


class Tube:
    """A tapered tube around a quadratic Bezier centre line (in-plane), z-profiled: the pancreas."""

    def __init__(self, pts, radii, z0, z1, zshift):
        self.P = np.array(pts, np.float64)
        self.radii, self.z0, self.z1, self.zshift = radii, z0, z1, zshift
        t = np.linspace(0, 1, 80)[:, None]
        self.curve = (1 - t) ** 2 * self.P[0] + 2 * (1 - t) * t * self.P[1] + t ** 2 * self.P[2]
        self.tt = t[:, 0]

    def sdf(self, z, X, Y):
        best = np.full(X.shape, 1e3, np.float32)
        if z <= self.z0 - abs(self.zshift) or z >= self.z1 + abs(self.zshift):
            return best
        x0, x1 = self.curve[:, 0].min() - 30, self.curve[:, 0].max() + 30
        y0, y1 = self.curve[:, 1].min() - 30, self.curve[:, 1].max() + 30
        win = np.nonzero((X[0] >= x0) & (X[0] <= x1))[0], np.nonzero((Y[:, 0] >= y0) & (Y[:, 0] <= y1))[0]
        if len(win[0]) == 0 or len(win[1]) == 0:
            return best
        cs, rs = slice(win[0][0], win[0][-1] + 1), slice(win[1][0], win[1][-1] + 1)
        best[rs, cs] = self._sdf(z, X[rs, cs], Y[rs, cs])
        return best

    def _sdf(self, z, X, Y):
        best = np.full(X.shape, 1e3, np.float32)
        for (px, py), t in zip(self.curve, self.tt):
            zc = 0.5 * (self.z0 + self.z1) + self.zshift * (t - 0.5)
            h = 0.5 * (self.z1 - self.z0)
            u = abs(z - zc) / h
            if u >= 1:
                continue
            r = np.interp(t, [0, 0.5, 1], self.radii) * (1 - u ** 2.5) ** 0.5
            best = np.minimum(best, (np.hypot(X - px, Y - py) - r).astype(np.float32))
        return best


def occupancy(sdf, px):
    """Partial-volume occupancy of a pixel of size px from a signed distance."""
    return np.clip(0.5 - sdf / px, 0.0, 1.0)


# ---------------------------------------------------------------- study geometry
class Study:
    def __init__(self, seed, region, labels=None, slices=None):
        self.seed, self.region = seed, region
        rng = self.rng = np.random.default_rng([seed, 0xA17])
        if region == "HEAD":
            self.size, self.px = 256, float(rng.uniform(0.8, 1.0))
            self.n = int(slices or rng.integers(30, 81))
            self.dz = float(rng.uniform(3.0, 5.0))
        else:
            self.size, self.px = 512, float(rng.uniform(0.6, 0.9))
            self.n = int(slices or rng.integers(40, 201))
            # the spec's 2.5-5 mm, kept to a trunk-sized range for long series (<= ~450 mm)
            self.dz = float(rng.uniform(2.5, max(2.5, min(5.0, 450.0 / self.n))))
        self.z_top = float(rng.uniform(-250, 150))
        # index 0 = lowest z (caudal); the DICOM writer numbers instances from the top
        self.z = self.z_top - self.dz * (self.n - 1) + self.dz * np.arange(self.n)
        self.zb, self.zt, self.L = float(self.z[0]), float(self.z[-1]), self.dz * (self.n - 1)
        c = (np.arange(self.size) - (self.size - 1) / 2) * self.px
        self.X, self.Y = np.meshgrid(c.astype(np.float32), c.astype(np.float32))
        self.labels = list(labels) if labels is not None else self._draw_labels()
        self.values = {}
        self.parts = []  # (organ id, shape), painted in order
        (self._head if region == "HEAD" else self._trunk)()

    def _draw_labels(self):
        n = int(self.rng.integers(0, 3))
        cls = REGION_LABELS[self.region]
        return [cls[self.rng.integers(len(cls))] for _ in range(n)]

    def u(self, f):  # a height given as a fraction of the scanned range
        return self.zb + f * self.L

    def _trunk(self):
        rng, half = self.rng, self.size * self.px / 2
        A = float(rng.uniform(0.72, 0.9) * half)
        B = float(A * rng.uniform(0.6, 0.8))
        y0 = float(rng.uniform(-8, 12))
        big = self.L + 400
        v = self.values
        v[TISSUE] = rng.uniform(32, 48)
        v[FAT] = rng.uniform(-115, -85)
        v[BONE] = rng.uniform(450, 950)
        v[AORTA] = rng.uniform(150, 250) if rng.random() < 0.5 else 40.0
        trunk = Star(rng, rng.uniform(-6, 6), y0, A, B, rng.uniform(2.2, 3.2), rng.uniform(-0.05, 0.05),
                     self.zb - big, self.zt + big, lob=0.03)
        fat_mm = float(rng.uniform(6, 25))
        self.trunk, self.fat_mm, self.A, self.B, self.y0 = trunk, fat_mm, A, B, y0
        self.parts.append((FAT, trunk))
        self.parts.append((TISSUE, _Offset(trunk, fat_mm)))
        ys = y0 + B - fat_mm - rng.uniform(28, 45)  # vertebral body centre (posterior midline)
        va, vb = rng.uniform(16, 24), rng.uniform(13, 19)
        spine = Star(rng, rng.uniform(-3, 3), ys, va, vb, rng.uniform(2.0, 2.6), 0, self.zb - big, self.zt + big, lob=0.02)
        arch = Star(rng, spine.cx, ys + vb + 14, rng.uniform(6, 10), rng.uniform(10, 15), 2.4, 0,
                    self.zb - big, self.zt + big, lob=0.05)
        ar = rng.uniform(9, 15)
        aorta = Star(rng, rng.uniform(12, 24), ys - vb - ar - rng.uniform(2, 6), ar, ar, 2.0, 0,
                     self.zb - big, self.zt + big, lob=0.0)
        self.spine_y, self.spine_b = ys, vb
        if self.region == "CHEST":
            self._chest(A, B, y0, ys, vb)
        else:
            self._abdomen(A, B, y0, ys, vb)
        self.parts += [(BONE, spine), (BONE, arch), (AORTA, aorta)]

    def _chest(self, A, B, y0, ys, vb):
        rng, v, fat = self.rng, self.values, self.fat_mm
        v[LUNG_R], v[LUNG_L] = rng.uniform(-895, -805), rng.uniform(-895, -805)
        v[HEART], v[MEDIAST] = rng.uniform(32, 48), v[TISSUE]
        inner_a, inner_b = A - fat, B - fat
        lungs = []
        for side, oid in ((-1, LUNG_R), (1, LUNG_L)):
            la = inner_a * rng.uniform(0.34, 0.5)
            lb = inner_b * rng.uniform(0.62, 0.85)
            cx = side * (inner_a * rng.uniform(0.42, 0.55))
            cy = y0 + rng.uniform(-0.1, 0.12) * inner_b
            top = self.zt + rng.uniform(-0.12, 0.08) * self.L
            bot = self.zb - rng.uniform(-0.15, 0.1) * self.L
            top = min(top, bot + 330)
            medial = side * rng.uniform(10, 24)  # flat medial side
            cut = (-side, 0.0, -medial * side)  # -side*x <= -medial*side
            lungs.append((oid, Star(rng, cx, cy, la, lb, rng.uniform(1.9, 2.6), rng.uniform(-0.25, 0.25), bot, top,
                                    lob=rng.uniform(0.03, 0.1), taper=(4.0, 3.0), cut=cut,
                                    drift=(side * rng.uniform(-10, 10), rng.uniform(-10, 10)))))
        self.parts += lungs
        # mediastinum: a narrow vertical band from the sternum to the spine
        med = Star(rng, rng.uniform(-4, 8), y0 + rng.uniform(-5, 5), rng.uniform(14, 26), inner_b * 0.95,
                   rng.uniform(2.2, 3.5), 0, self.zb - 500, self.zt + 500, lob=0.05)
        self.parts.append((MEDIAST, med))
        ha, hb = rng.uniform(38, 72), rng.uniform(32, 58)  # wider than tall allowed
        hz = self.u(rng.uniform(0.15, 0.45))
        hl = rng.uniform(45, 75)
        heart = Star(rng, rng.uniform(4, 28), y0 - rng.uniform(0.05, 0.35) * inner_b, ha, hb, rng.uniform(1.9, 2.5),
                     rng.uniform(-0.7, 0.2), hz - hl, hz + hl, lob=rng.uniform(0.03, 0.09), taper=(2.2, 2.0))
        self.parts.append((HEART, heart))

    def _abdomen(self, A, B, y0, ys, vb):
        rng, v, fat = self.rng, self.values, self.fat_mm
        v[LIVER], v[SPLEEN] = rng.uniform(56, 64), rng.uniform(46, 54)
        v[KIDNEY_R] = v[KIDNEY_L] = rng.uniform(31, 39)
        v[PANCREAS] = rng.uniform(41, 49)
        ia, ib = A - fat, B - fat
        lb = self.u(rng.uniform(0.1, 0.45))
        lt = self.zt + rng.uniform(0.0, 0.3) * self.L + 40
        right = Star(rng, -ia * rng.uniform(0.38, 0.5), y0 + rng.uniform(-0.05, 0.12) * ib, ia * rng.uniform(0.48, 0.62),
                     ib * rng.uniform(0.75, 0.92), rng.uniform(1.8, 2.6), rng.uniform(-0.3, 0.3), lb, lt,
                     lob=rng.uniform(0.03, 0.08), taper=(1.6, 3.0))
        left = Star(rng, ia * rng.uniform(-0.05, 0.15), y0 - ib * rng.uniform(0.35, 0.55), ia * rng.uniform(0.22, 0.35),
                    ib * rng.uniform(0.2, 0.32), rng.uniform(1.8, 2.4), rng.uniform(-0.4, 0.1),
                    lb + rng.uniform(0.2, 0.45) * (lt - lb), lt, lob=0.06, taper=(1.8, 2.5))
        self.parts += [(LIVER, right), (LIVER, left)]
        sz = self.u(rng.uniform(0.5, 0.85))
        sl = rng.uniform(35, 60)
        self.parts.append((SPLEEN, Star(rng, ia * rng.uniform(0.5, 0.68), y0 + ib * rng.uniform(0.1, 0.4),
                                        rng.uniform(18, 30), rng.uniform(35, 55), rng.uniform(1.8, 2.3),
                                        rng.uniform(0.3, 0.9), sz - sl, sz + sl, lob=0.08)))
        # pancreas: head (patient right, image left) -> body anterior to the aorta -> tail (patient left)
        by = ys - vb - rng.uniform(38, 55)
        pts = [(-rng.uniform(25, 45), by + rng.uniform(5, 20)), (rng.uniform(-5, 15), by - rng.uniform(5, 20)),
               (ia * rng.uniform(0.35, 0.55), by + rng.uniform(10, 35))]
        pz = self.u(rng.uniform(0.35, 0.65))
        ph = rng.uniform(18, 32)
        self.parts.append((PANCREAS, Tube(pts, (rng.uniform(14, 20), rng.uniform(10, 14), rng.uniform(8, 12)),
                                          pz - ph, pz + ph, rng.uniform(-15, 25))))
        kz = self.u(rng.uniform(0.25, 0.6))
        for side, oid in ((-1, KIDNEY_R), (1, KIDNEY_L)):
            kl = rng.uniform(45, 65)
            zc = kz + (rng.uniform(5, 20) if side > 0 else 0)
            self.parts.append((oid, Star(rng, side * rng.uniform(50, 75), ys + rng.uniform(-15, 8),
                                         rng.uniform(18, 27), rng.uniform(24, 33), rng.uniform(1.9, 2.3),
                                         side * rng.uniform(0.2, 0.7), zc - kl, zc + kl, lob=0.1, taper=(2.0, 2.0))))

    def _head(self):
        rng, v = self.rng, self.values
        v[SHELL], v[BRAIN], v[VENTRICLE] = rng.uniform(260, 340), rng.uniform(515, 585), rng.uniform(160, 210)
        a, b = rng.uniform(66, 80), rng.uniform(80, 96)
        a = min(a, self.size * self.px / 2 - 8)
        b = min(b, self.size * self.px / 2 - 6)
        vertex = self.zt - rng.uniform(-0.03, 0.12) * self.L
        c = rng.uniform(0.45, 0.65) * min(self.L, 220) + 40
        bottom = self.zb - rng.uniform(0.2, 0.6) * self.L - 60
        head = Star(rng, rng.uniform(-4, 4), rng.uniform(-4, 6), a, b, rng.uniform(2.0, 2.5), rng.uniform(-0.06, 0.06),
                    bottom, vertex, lob=0.025, taper=(6.0, 2.0))
        # the profile: cranial half of the span is the dome, so put the dome's start c below the vertex
        head.z0 = min(vertex - 2 * c, self.zb - 10)
        shell = float(rng.uniform(6, 12))
        self.parts.append((SHELL, head))
        self.parts.append((BRAIN, _Offset(head, shell)))
        vz = self.u(rng.uniform(0.45, 0.75))
        vl = rng.uniform(15, 30)
        for side in (-1, 1):
            self.parts.append((VENTRICLE, Star(rng, side * rng.uniform(5, 11), rng.uniform(-8, 4), rng.uniform(4, 8),
                                               rng.uniform(16, 30), rng.uniform(1.8, 2.4), side * rng.uniform(0.05, 0.3),
                                               vz - vl, vz + vl, lob=0.08)))
        self.head = head

    # ------------------------------------------------------------ rendering
    def slice_maps(self, k, X=None, Y=None):
        """(label map, [(organ id, occupancy)]) of slice k on the grid X, Y (default: full slice)."""
        X = self.X if X is None else X
        Y = self.Y if Y is None else Y
        z = float(self.z[k])
        lab = np.full(X.shape, AIR, np.uint8)
        occs = []
        full = X is self.X
        container = None  # organs stay inside the trunk's inner tissue / the brain
        for oid, shape in self.parts:
            if full and isinstance(shape, Star) and shape.z1 - shape.z0 < 5000:
                if shape.scale(z) <= 0.02:
                    continue
                cx, cy, rad = shape.reach(z)
                half = (self.size - 1) / 2
                c0 = int(max(0, np.floor((cx - rad) / self.px + half))); c1 = int(min(self.size, np.ceil((cx + rad) / self.px + half) + 1))
                r0 = int(max(0, np.floor((cy - rad) / self.px + half))); r1 = int(min(self.size, np.ceil((cy + rad) / self.px + half) + 1))
                if c1 <= c0 or r1 <= r0:
                    continue
                o = np.zeros(X.shape, np.float32)
                o[r0:r1, c0:c1] = occupancy(shape.sdf(z, X[r0:r1, c0:c1], Y[r0:r1, c0:c1]), self.px)
            else:
                o = occupancy(shape.sdf(z, X, Y), self.px)
            if container is not None and oid not in (BONE, AORTA, TISSUE, BRAIN):
                o = np.minimum(o, container)
            if oid in (TISSUE, BRAIN):
                container = o
            if o.max() <= 0:
                continue
            occs.append((oid, o))
            lab[o >= 0.5] = oid
        return lab, occs


class _Offset:
    """The inside of a shape shrunk by a margin (fat rim, skull shell)."""

    def __init__(self, shape, margin):
        self.shape, self.margin = shape, margin

    def sdf(self, z, X, Y):
        return self.shape.sdf(z, X, Y) + self.margin


# ---------------------------------------------------------------- lesions
def random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


class Blob:
    """A lobulated lesion: main ellipsoid + Gaussian lobes, implicit surface, radially perturbed."""

    def __init__(self, rng):
        self.axes = np.sort(rng.uniform(0.7, 1.0, 3))[::-1] * np.array([1.0, 1.0, 1.0])
        self.R = random_rotation(rng)
        n = int(rng.integers(1, 4))
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        self.lobes = [(d * rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.6), rng.uniform(0.3, 0.7)) for d in dirs]
        self.waves = [(w / np.linalg.norm(w), rng.uniform(0, 2 * np.pi), rng.uniform(0.03, 0.08))
                      for w in rng.normal(size=(4, 3))]

    def inside(self, P):
        """P: (..., 3) points in units of the lesion's radius scale; bool mask."""
        Q = P @ self.R
        n = np.linalg.norm(Q, axis=-1) + 1e-9
        pert = 1 + sum(amp * np.cos(3 * (Q @ w) / n + ph) for w, ph, amp in self.waves)
        q = ((Q / self.axes) ** 2).sum(-1) / pert ** 2
        field = np.exp(-2 * q)
        for c, s, wgt in self.lobes:
            field = field + wgt * np.exp(-2 * ((Q - c) ** 2).sum(-1) / s ** 2)
        return field >= np.exp(-2.0)


def feret(mask2d, px):
    """Longest in-plane (Feret) diameter in mm, pixel edge to edge (as the node measures)."""
    r, c = np.nonzero(mask2d)
    if len(r) == 0:
        return 0.0
    th = np.arange(36) * np.pi / 36
    proj = np.outer(c, np.cos(th)) + np.outer(r, np.sin(th))
    return float(((proj.max(0) - proj.min(0)).max() + 1) * px)


def diameters(mask, px, dz):
    """(longest in-plane Feret diameter, longest 3D diameter between voxel centres + one voxel)."""
    inplane = max((feret(m, px) for m in mask if m.any()), default=0.0)
    z, r, c = np.nonzero(mask)
    P = np.stack([z * dz, r * px, c * px], 1).astype(np.float64)
    if len(P) > 3000:
        P = P[np.random.default_rng(0).choice(len(P), 3000, replace=False)]
    hull = P
    d2 = 0.0
    for i in range(0, len(hull), 500):
        d2 = max(d2, float((((hull[i:i + 500, None] - hull[None]) ** 2).sum(-1)).max()))
    return inplane, math.sqrt(d2) + px


def place_lesions(st):
    """Places st.labels; returns the lesion label volume (uint8) and the lesion records."""
    rng = np.random.default_rng([st.seed, 0x1E5])
    vol_lab = np.zeros((st.n, st.size, st.size), np.uint8)
    organ = np.stack([st.slice_maps(k)[0] for k in range(st.n)])
    st.organ_map = organ
    records, cands = [], {}
    for idx, label in enumerate(st.labels, 1):
        if label not in cands:
            host = np.isin(organ, HOSTS[label])
            border = np.zeros_like(host)
            if host.any():
                zi, ri, ci = (np.nonzero(host.any(a))[0] for a in ((1, 2), (0, 2), (0, 1)))
                box = (slice(zi[0], zi[-1] + 1), slice(max(0, ri[0] - 4), ri[-1] + 5), slice(max(0, ci[0] - 4), ci[-1] + 5))
                h = torch.from_numpy((~host[box]).astype(np.float32))[:, None]
                border[box] = host[box] & (F.max_pool2d(h, 7, 1, 3)[:, 0].numpy() > 0)
            ends = host.copy()
            ends[2:-2] = False
            cands[label] = {"uniform": np.nonzero(host), "border": np.nonzero(border), "end": np.nonzero(ends)}
        rec = None
        for attempt in range(300):
            rec = _try_lesion(st, rng, label, organ, vol_lab, attempt, cands[label])
            if rec is not None:
                break
        if rec is None:
            raise RuntimeError(f"seed {st.seed}: could not place a {label}")
        sl, m = rec.pop("_where")
        vol_lab[sl][m] = idx
        records.append(rec)
    return vol_lab, records


def _try_lesion(st, rng, label, organ, vol_lab, attempt, cand):
    lo, hi = SIZE_MM[label]
    if label == "lung nodule":
        target = float(np.exp(rng.uniform(np.log(lo), np.log(hi - 0.5))))
    else:
        target = float(rng.uniform(lo, hi))
    if attempt % 10 == 9:  # sizes over the whole range, but a large one that fits nowhere gives way
        target = float(rng.uniform(lo, lo + 0.6 * (hi - lo)))
    mode = str(rng.choice(["uniform", "border", "end"], p=[0.6, 0.25, 0.15]))
    zz, rr, cc = cand[mode] if len(cand[mode][0]) else cand["uniform"]
    if len(zz) == 0:
        return None
    i = int(rng.integers(len(zz)))
    cz, cr, cx = int(zz[i]), int(rr[i]), int(cc[i])
    blob = Blob(rng)
    dia, scale = 0.0, target / 2 / 1.25
    for it in range(3):  # scale the blob to the target in-plane diameter, as measured on the full lesion
        if it:
            scale *= target / max(1e-3, dia)
        ext = scale * 2.2
        nz, nr = int(math.ceil(ext / st.dz)), int(math.ceil(ext / st.px))
        Z, R, C = np.meshgrid(np.arange(-nz, nz + 1) * st.dz, np.arange(-nr, nr + 1) * st.px,
                              np.arange(-nr, nr + 1) * st.px, indexing="ij")
        full = blob.inside(np.stack([Z, R, C], -1) / scale)
        if not full.any():
            return None
        dia = max(feret(s, st.px) for s in full if s.any())
    if full[0].any() or full[-1].any() or full[:, 0].any() or full[:, -1].any() or full[:, :, 0].any() or full[:, :, -1].any():
        return None
    z0, r0, c0 = cz - nz, cr - nr, cx - nr
    if r0 < 0 or c0 < 0 or r0 + full.shape[1] > st.size or c0 + full.shape[2] > st.size:
        return None
    zlo, zhi = max(0, z0), min(st.n, z0 + full.shape[0])
    m = full[zlo - z0:zhi - z0]
    if not m.any():
        return None
    sl = (slice(zlo, zhi), slice(r0, r0 + full.shape[1]), slice(c0, c0 + full.shape[2]))
    inplane, d3 = diameters(m, st.px, st.dz)
    cut = bool(m.sum() < full.sum())
    if cut and abs(inplane - dia) > 0.5:  # cut off by the volume's end, but its largest section shows
        return None
    if not lo <= inplane <= hi:
        return None
    full_d3 = diameters(full, st.px, st.dz)[1] if cut else d3
    if label == "lung nodule" and full_d3 >= 30:
        return None
    loc = organ[sl][m]
    frac = float(np.isin(loc, HOSTS[label]).mean())
    if frac < HOST_FRACTION[label]:
        return None
    if np.isin(loc, [AIR, FAT, BONE, AORTA, SHELL, VENTRICLE]).mean() > (0.0 if label != "kidney tumor" else 0.15):
        return None
    if label in ("lung nodule", "lung tumor"):
        if np.isin(loc, [LIVER, SPLEEN] + ([HEART] if label == "lung nodule" else [])).any():
            return None
    # never overlapping, nor touching, another lesion
    other = torch.from_numpy((vol_lab[sl] > 0).astype(np.float32))[None, None]
    if F.max_pool3d(other, 3, 1, 1)[0, 0].numpy()[m].any():
        return None
    vals = np.bincount(loc, minlength=32)
    host_id = int(max(HOSTS[label], key=lambda h: vals[h]))
    zs = np.nonzero(m.any((1, 2)))[0] + zlo
    rs, cs = np.nonzero(m.any(0))
    return {"label": label, "diameter_mm": round(inplane, 2), "diameter_3d_mm": round(d3, 2),
            "diameter_3d_full_mm": round(full_d3, 2), "host": ORGAN_NAMES[host_id], "host_id": host_id,
            "host_fraction": round(frac, 3), "voxels": int(m.sum()), "slices": [int(zs.min()), int(zs.max())],
            "cut_by_volume_end": cut, "placement": mode, "centre_voxel": [cz, cr, cx],
            "side": "right" if (cs.mean() + c0) < st.size / 2 else "left", "attempts": attempt + 1,
            "_where": (sl, m)}


def lesion_value(st, rng, rec):
    label, v = rec["label"], st.values
    if label == "liver tumor":
        return v[LIVER] - rng.uniform(20, 50), "hypodense"
    if label == "kidney tumor":
        if rng.random() < 0.5:
            return v[KIDNEY_R] + rng.uniform(40, 80), "enhancing"
        return v[KIDNEY_R] - rng.uniform(15, 30), "hypodense"
    if label == "pancreas tumor":
        return v[PANCREAS] - rng.uniform(15, 30), "hypodense"
    if label == "lung nodule":
        return rng.uniform(-100, 60), "solid"
    if label == "lung tumor":
        return rng.uniform(20, 50), "solid"
    return rng.uniform(850, 1100), "hyperintense"


# ---------------------------------------------------------------- pixels
def smooth_noise(rng, n, size, cells):
    """A unit-variance 3D-correlated random field, (n, size, size), trilinear from a coarse grid."""
    g = torch.from_numpy(rng.normal(size=(1, 1, max(2, n // 3 + 2), cells, cells)).astype(np.float32))
    f = F.interpolate(g, size=(n, size, size), mode="trilinear", align_corners=False)[0, 0]
    f = (f - f.mean()) / (f.std() + 1e-6)
    return f.numpy()


def render_pixels(st, vol_lab, records):
    rng = np.random.default_rng([st.seed, 0x91C])
    ct = st.region != "HEAD"
    tex = smooth_noise(rng, st.n, st.size, int(rng.integers(24, 56)))
    tex2 = smooth_noise(rng, st.n, st.size, int(rng.integers(60, 110)))
    amp = {LUNG_R: 14, LUNG_L: 14, BONE: 60, FAT: 6, LIVER: 3, SPLEEN: 2.5, KIDNEY_R: 2.5, KIDNEY_L: 2.5,
           PANCREAS: 2.5, TISSUE: 3, MEDIAST: 3, HEART: 2.5, AORTA: 2, SHELL: 10, BRAIN: 8, VENTRICLE: 6}
    sigma = float(rng.uniform(8, 20) if ct else rng.uniform(10, 25))
    les_vals = [lesion_value(st, rng, r) for r in records]
    for r, (val, density) in zip(records, les_vals):
        r["intensity"], r["density"] = round(float(val), 1), density
    out = np.zeros((st.n, st.size, st.size), np.int16 if ct else np.uint16)
    bias = None
    if not ct:
        bias = 1 + 0.025 * smooth_noise(rng, st.n, st.size, 4)
    lesion_soft = None
    if records:
        lv = torch.from_numpy((vol_lab > 0).astype(np.float32))[None, None]
        k = torch.tensor([0.25, 0.5, 0.25])
        kern = (k[:, None] * k[None, :])[None, None, None]
        lesion_soft = F.conv3d(lv, kern, padding=(0, 1, 1))[0, 0].numpy()
        lesion_soft = np.maximum(lesion_soft, (vol_lab > 0) * 0.75)
        idx_grow = F.max_pool3d(torch.from_numpy(vol_lab.astype(np.float32))[None, None], (1, 3, 3), 1, (0, 1, 1))
        idx_grow = idx_grow[0, 0].numpy().astype(np.uint8)
    lut = np.full(32, -1000.0 if ct else 0.0, np.float32)
    alut = np.zeros(32, np.float32)
    for oid, val in st.values.items():
        lut[oid] = val
    for oid, val in amp.items():
        alut[oid] = val
    k3 = torch.tensor([0.25, 0.5, 0.25])
    pv = (k3[:, None] * k3[None, :])[None, None]
    for k0 in range(0, st.n, 16):  # partial-volume edges: the noise-free slice through a 3x3 binomial
        o = st.organ_map[k0:k0 + 16]
        # replicate padding: a zero pad would paint a bright frame on the image border
        base = F.conv2d(F.pad(torch.from_numpy(lut[o])[:, None], (1, 1, 1, 1), mode="replicate"), pv)[:, 0].numpy()
        amps = F.conv2d(F.pad(torch.from_numpy(alut[o])[:, None], (1, 1, 1, 1), mode="replicate"), pv)[:, 0].numpy()
        for k in range(k0, min(st.n, k0 + 16)):
            _one_slice(st, k, base[k - k0], amps[k - k0], tex, tex2, lesion_soft, idx_grow if records else None,
                       les_vals, bias, rng, sigma, ct, out)
    return out, sigma


def _one_slice(st, k, img, a, tex, tex2, lesion_soft, idx_grow, les_vals, bias, rng, sigma, ct, out):
    img += a * (0.8 * tex[k] + 0.6 * tex2[k])
    if lesion_soft is not None and lesion_soft[k].any():
        w = lesion_soft[k]
        val = np.zeros_like(img)
        for j, (v, _) in enumerate(les_vals, 1):
            val[idx_grow[k] == j] = v
        ltex = 4.0 * tex2[k] if ct else 15.0 * tex2[k]
        img = img * (1 - w) + (val + ltex) * w
    if bias is not None:
        img *= bias[k]
    img += rng.normal(0, sigma, img.shape).astype(np.float32)
    if ct:
        out[k] = np.clip(np.rint(img + 1024), -32768, 32767).astype(np.int16)
    else:
        out[k] = np.clip(np.rint(img), 0, 65535).astype(np.uint16)


# ---------------------------------------------------------------- DICOM
def _uid(seed, what):
    return "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, f"triage-node/phantoms_alt/{seed}/{what}").int)


def write_dicom(st, pixels, out_dir):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([st.seed, 0xD1C])
    ct = st.region != "HEAD"
    body = st.region if ct else ("BRAIN" if rng.random() < 1 / 3 else "HEAD")
    sop_class = "1.2.840.10008.5.1.4.1.1.2" if ct else "1.2.840.10008.5.1.4.1.1.4"
    study_uid, series_uid, frame_uid = _uid(st.seed, "study"), _uid(st.seed, "series"), _uid(st.seed, "frame")
    day = datetime.date(2025, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 600)))
    tm = f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
    origin = -(st.size - 1) / 2 * st.px  # the slice centred on the table axis (x = y = 0)
    names = [f"{int(h):016x}" for h in rng.integers(0, 2 ** 62, st.n)]
    order = rng.permutation(st.n)
    for k in range(st.n):
        inst = st.n - k  # instance 1 = most cranial slice
        sop = _uid(st.seed, f"sop/{k}")
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = "2.25.187309261403311398123851346715530011"
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName = f"ALT^PHANTOM{st.seed}"
        ds.PatientID = f"ALT{st.seed:08d}"
        ds.PatientBirthDate, ds.PatientSex = "19600101", "O"
        ds.AccessionNumber = f"AX{st.seed % 10 ** 12:012d}"[:16]
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = day.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = tm
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 3, inst
        ds.Modality = "CT" if ct else "MR"
        ds.Manufacturer, ds.ManufacturerModelName = "PhantomsAlt", "render.py"
        ds.BodyPartExamined = body
        ds.StudyDescription = f"{body} phantom"
        ds.SeriesDescription = f"{body} axial"
        ds.PatientPosition = "HFS"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        z = float(st.z[k])
        ds.ImagePositionPatient = [round(origin, 4), round(origin, 4), round(z, 4)]
        ds.SliceLocation = round(z, 4)
        ds.SliceThickness = round(st.dz, 4)
        ds.SpacingBetweenSlices = round(st.dz, 4)
        ds.PixelSpacing = [round(st.px, 6), round(st.px, 6)]
        ds.Rows = ds.Columns = st.size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        if ct:
            ds.PixelRepresentation = 1
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
            ds.KVP = 120
            ds.WindowCenter, ds.WindowWidth = (40, 400) if st.region == "ABDOMEN" else (-600, 1500)
        else:
            ds.PixelRepresentation = 0
            ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "SE", "NONE", "2D"
            ds.MagneticFieldStrength = 1.5
        ds.PixelData = pixels[k].tobytes()
        ds.save_as(str(out_dir / names[order[k]]), write_like_original=False)
    return study_uid, body


# ---------------------------------------------------------------- API
def render_study(out_dir, seed, region=None, labels=None, slices=None, truth_prefix=None):
    """Renders one study into out_dir; writes <truth_prefix>.npz/.json (default: beside out_dir);
    returns the truth dict (with 'mask_volume' = the uint8 lesion label volume)."""
    region = region or ["CHEST", "ABDOMEN", "HEAD"][np.random.default_rng([seed, 7]).integers(3)]
    st = Study(seed, region, labels, slices)
    vol_lab, records = place_lesions(st)
    pixels, sigma = render_pixels(st, vol_lab, records)
    study_uid, body = write_dicom(st, pixels, out_dir)
    truth = {"renderer": "phantoms_alt", "seed": seed, "region": region, "body_part": body,
             "study_uid": study_uid, "shape": [st.n, st.size, st.size], "pixel_spacing_mm": st.px,
             "slice_spacing_mm": st.dz, "noise_sigma": sigma, "z_lowest": float(st.z[0]),
             "values": {ORGAN_NAMES[k] + ("" if k not in (LUNG_R, LUNG_L) else "_" + ("right" if k == LUNG_R else "left")):
                        round(float(v), 1) for k, v in st.values.items()},
             "lesions": records,
             "labels": [r["label"] for r in records] or ["No findings"]}
    prefix = pathlib.Path(truth_prefix) if truth_prefix else pathlib.Path(str(pathlib.Path(out_dir).resolve()) + ".truth")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(str(prefix) + ".npz", labels=vol_lab, organs=st.organ_map)
    pathlib.Path(str(prefix) + ".json").write_text(json.dumps(truth, indent=1) + "\n")
    truth["mask_volume"] = vol_lab
    truth["organ_volume"] = st.organ_map
    return truth


# ---------------------------------------------------------------- spec check
def check_study(folder, truth_prefix):
    """Checks a rendered study against PHANTOMS.md; returns a list of problems (empty = conforms)."""
    folder = pathlib.Path(folder)
    t = json.loads(pathlib.Path(str(truth_prefix) + ".json").read_text())
    z = np.load(str(truth_prefix) + ".npz")
    lab, organs = z["labels"], z["organs"]
    bad = []
    ds = [pydicom.dcmread(f) for f in folder.iterdir()]
    ds.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    ct = t["region"] != "HEAD"
    n = len(ds)
    if (n, int(ds[0].Rows), int(ds[0].Columns)) != tuple(t["shape"]):
        bad.append(f"shape {(n, ds[0].Rows, ds[0].Columns)} != truth {t['shape']}")
    lo, hi = (40, 200) if ct else (30, 80)
    if not lo <= n <= hi:
        bad.append(f"{n} slices outside {lo}-{hi}")
    size = 512 if ct else 256
    pxr = (0.6, 0.9) if ct else (0.8, 1.0)
    dzr = (2.5, 5.0) if ct else (3.0, 5.0)
    req = ["PatientID", "PatientName", "AccessionNumber", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
           "StudyDate", "StudyTime", "Modality", "BodyPartExamined", "SeriesDescription", "Manufacturer",
           "FrameOfReferenceUID", "SliceLocation", "SliceThickness", "ImagePositionPatient", "PixelSpacing"]
    sops = set()
    for d in ds:
        for r in req:
            if r not in d or d.data_element(r).value in (None, ""):
                bad.append(f"{r} missing")
        if d.file_meta.TransferSyntaxUID != ExplicitVRLittleEndian:
            bad.append("not explicit VR little endian")
        if [float(x) for x in d.ImageOrientationPatient] != [1, 0, 0, 0, 1, 0] or d.PatientPosition != "HFS":
            bad.append("orientation/position")
        if d.Modality != ("CT" if ct else "MR") or d.SOPClassUID != ("1.2.840.10008.5.1.4.1.1.2" if ct else "1.2.840.10008.5.1.4.1.1.4"):
            bad.append("modality/SOP class")
        body = d.BodyPartExamined
        if (ct and body != t["region"]) or (not ct and body not in ("HEAD", "BRAIN")):
            bad.append(f"BodyPartExamined {body}")
        if d.SeriesDescription != f"{body} axial":
            bad.append(f"SeriesDescription {d.SeriesDescription!r}")
        if d.Rows != size or d.Columns != size:
            bad.append("matrix")
        px = float(d.PixelSpacing[0])
        if float(d.PixelSpacing[1]) != px or not pxr[0] <= px <= pxr[1]:
            bad.append(f"pixel spacing {d.PixelSpacing}")
        ipp = [float(x) for x in d.ImagePositionPatient]
        centre = [ipp[0] + (size - 1) / 2 * px, ipp[1] + (size - 1) / 2 * px]
        if max(abs(centre[0]), abs(centre[1])) > 1e-3:
            bad.append(f"slice not centred on the table axis: {centre}")
        if abs(float(d.SliceLocation) - ipp[2]) > 1e-3:
            bad.append("SliceLocation != z")
        if ct:
            if d.PixelRepresentation != 1 or d.BitsAllocated != 16 or float(d.RescaleIntercept) != -1024 or float(d.RescaleSlope) != 1:
                bad.append("CT storage (signed 16-bit, intercept -1024, slope 1)")
        elif d.PixelRepresentation != 0 or d.BitsAllocated != 16 or "RescaleIntercept" in d:
            bad.append("MR storage (unsigned 16-bit, no rescale)")
        if d.SOPInstanceUID in sops:
            bad.append("duplicate SOPInstanceUID")
        sops.add(d.SOPInstanceUID)
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID", "AccessionNumber"):
        if len({str(getattr(d, key)) for d in ds}) != 1:
            bad.append(f"{key} differs between slices")
    if str(ds[0].StudyInstanceUID) != t["study_uid"]:
        bad.append("study UID differs from truth")
    zs = np.array([float(d.ImagePositionPatient[2]) for d in ds])
    steps = np.diff(zs)
    dz = float(ds[0].SliceThickness)
    if not (np.allclose(steps, dz, atol=1e-3) and dzr[0] <= dz <= dzr[1]):
        bad.append(f"slice spacing {steps.min():.3f}-{steps.max():.3f} vs thickness {dz}")
    files = sorted(p.name for p in folder.iterdir())
    by_z = [pathlib.Path(d.filename).name for d in ds]
    if files == by_z or files == by_z[::-1]:
        bad.append("file names sort in slice order")
    vol = np.stack([d.pixel_array.astype(np.float32) * float(getattr(d, "RescaleSlope", 1)) +
                    float(getattr(d, "RescaleIntercept", 0)) for d in ds])
    px = float(ds[0].PixelSpacing[0])
    # intensities: median of each structure away from its edges
    rngs = CT_RANGES if ct else MR_RANGES
    org = torch.from_numpy(organs.astype(np.float32))
    for oid, name in ORGAN_NAMES.items():
        if name not in rngs:
            continue
        m = organs == oid
        if oid in (TISSUE, MEDIAST):
            continue
        core = m & (F.max_pool2d(torch.from_numpy((~m).astype(np.float32))[:, None], 5, 1, 2)[:, 0].numpy() == 0) & (lab == 0)
        if core.sum() < 200:
            continue
        med = float(np.median(vol[core]))
        lo_, hi_ = rngs[name]
        tol = 6 if ct else 15
        if not lo_ - tol <= med <= hi_ + tol:
            bad.append(f"{name} median {med:.0f} outside {lo_}-{hi_}")
    del org
    outside = organs == AIR
    if ct:
        if abs(float(np.median(vol[outside])) + 1000) > 5:
            bad.append("air is not -1000 HU")
        top = vol[:, :20, :]  # the rows above the trunk: air only
        noise = float(np.std(np.diff(top, axis=2)) / math.sqrt(2))
        if not 7 <= noise <= 21:
            bad.append(f"noise sigma {noise:.1f} outside 8-20")
    required = {"CHEST": [LUNG_R, LUNG_L, HEART, BONE, AORTA, FAT],
                "ABDOMEN": [LIVER, SPLEEN, KIDNEY_R, KIDNEY_L, PANCREAS, BONE, AORTA, FAT],
                "HEAD": [SHELL, BRAIN, VENTRICLE]}[t["region"]]
    for oid in required:
        if not (organs == oid).any():
            bad.append(f"{ORGAN_NAMES[oid]} ({oid}) absent from the whole volume")
    # lesions
    if len(t["lesions"]) > 2:
        bad.append("more than 2 lesions")
    if len(t["lesions"]) != int(lab.max()):
        bad.append("truth lesion count != mask labels")
    for j, r in enumerate(t["lesions"], 1):
        m = lab == j
        if r["label"] not in REGION_LABELS[t["region"]]:
            bad.append(f"{r['label']} in a {t['region']} study")
        inplane, d3 = diameters(m, px, dz)
        lo_, hi_ = SIZE_MM[r["label"]]
        if not lo_ <= inplane <= hi_ or abs(inplane - r["diameter_mm"]) > 0.05:
            bad.append(f"lesion {j} {r['label']}: longest diameter {inplane:.1f} mm (truth {r['diameter_mm']}) outside {lo_}-{hi_}")
        frac = float(np.isin(organs[m], HOSTS[r["label"]]).mean())
        if frac < HOST_FRACTION[r["label"]]:
            bad.append(f"lesion {j} {r['label']}: {frac:.2f} inside the host")
        inner = m & (F.max_pool2d(torch.from_numpy((~m).astype(np.float32))[:, None], 3, 1, 1)[:, 0].numpy() == 0)
        if inner.sum() >= 10:
            mean = float(vol[inner].mean())
            v = t["values"]
            liver, pancreas, kidney = (v.get(k, np.nan) for k in ("liver", "pancreas", "kidney"))
            want = {"liver tumor": (liver - 50, liver - 20), "pancreas tumor": (pancreas - 30, pancreas - 15),
                    "kidney tumor": ((kidney - 30, kidney - 15) if r["density"] == "hypodense" else (kidney + 40, kidney + 80)),
                    "lung nodule": (-100, 60), "lung tumor": (20, 50), "brain tumor": (850, 1100)}[r["label"]]
            tol = max(8.0, 4 * t["noise_sigma"] / math.sqrt(inner.sum())) if ct else 45
            if not want[0] - tol <= mean <= want[1] + tol:
                bad.append(f"lesion {j} {r['label']}: mean {mean:.0f} outside {want[0]:.0f}-{want[1]:.0f}")
    if int(lab.max()) >= 2:
        a = torch.from_numpy((lab == 1).astype(np.float32))[None, None]
        if (F.max_pool3d(a, 3, 1, 1)[0, 0].numpy() > 0)[lab == 2].any():
            bad.append("lesions touch or overlap")
    return sorted(set(bad))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--region", choices=["CHEST", "ABDOMEN", "HEAD"])
    ap.add_argument("--lesions", nargs="*", help="labels (PHANTOMS.md), or none; default: drawn (0-2)")
    ap.add_argument("--slices", type=int, help="slice count (default: drawn over the spec's range)")
    ap.add_argument("--truth", help="truth prefix (default: OUT_DIR.truth)")
    ap.add_argument("--check", action="store_true", help="check the written study against the spec")
    a = ap.parse_args()
    labels = None
    if a.lesions is not None:
        labels = [] if a.lesions in ([], ["none"]) else a.lesions
        region = a.region or next(r for r, c in REGION_LABELS.items() if labels and labels[0] in c)
        for l in labels:
            if l not in REGION_LABELS[region]:
                raise SystemExit(f"{l!r} is not a {region} class: {REGION_LABELS[region]}")
        a.region = region
    t = render_study(a.out_dir, a.seed, a.region, labels, a.slices, a.truth)
    print(json.dumps({k: v for k, v in t.items() if k not in ("mask_volume", "organ_volume")}, indent=1))
    if a.check:
        prefix = a.truth or str(pathlib.Path(a.out_dir).resolve()) + ".truth"
        bad = check_study(a.out_dir, prefix)
        print("spec check:", "ok" if not bad else bad)
        raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
