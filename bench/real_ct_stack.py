#!/usr/bin/python3
"""Builds a long real CT series for timing the analysis: the real slices of a corpus series,
each repeated in z order, restacked at a new spacing with new UIDs (pixel data unchanged).
The corpus has no real CT of 300 slices; this gives one with real anatomy, real noise and real
texture on every slice, which is what the analysis time depends on (not a diagnostic series).

usage: real_ct_stack.py SRC_DIR OUT_DIR [--slices 300] [--spacing 1.0]
"""
import argparse
import pathlib

import pydicom
from pydicom.uid import generate_uid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--spacing", type=float, default=1.0)
    a = ap.parse_args()
    src = []
    for p in sorted(pathlib.Path(a.src).iterdir()):
        ds = pydicom.dcmread(p)
        if "PixelData" in ds and "ImagePositionPatient" in ds:
            src.append(ds)
    src.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    if not src:
        raise SystemExit(f"no image slices in {a.src}")
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    x, y, z0 = (float(v) for v in src[0].ImagePositionPatient)
    for i in range(a.slices):
        ds = src[i * len(src) // a.slices].copy()
        sop = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = i + 1
        z = z0 + i * a.spacing
        ds.ImagePositionPatient = [x, y, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = z
        ds.SliceThickness = a.spacing
        ds.save_as(out / f"{i:04d}.dcm")
    print(f"{a.slices} slices from {len(src)} real slices of {a.src} -> {out}")


if __name__ == "__main__":
    main()
