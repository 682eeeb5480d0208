#!/usr/bin/python3
"""Writes a phantom study as DICOM files (one file per slice, names in no particular order).

usage: write_study.py OUT_DIR [--seed N] [--region CHEST|ABDOMEN|HEAD] [--lesions LABEL,...|none]
                      [--slices N] [--masks FILE.npz] [--variant default|broad]
"""
import argparse
import datetime
import pathlib
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from phantom import make_phantom  # noqa: E402

CT_STORAGE, MR_STORAGE = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"


def write_study(out_dir, phantom, seed):
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 7)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    nz, rows, cols = phantom.volume.shape
    now = datetime.datetime(2026, 1, 1) + datetime.timedelta(minutes=int(rng.integers(0, 500000)))
    order = rng.permutation(nz)
    for k in range(nz):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CT_STORAGE if phantom.modality == "CT" else MR_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        ds.PatientName, ds.PatientID = f"PHANTOM^{seed}", f"PH{seed:05d}"
        ds.AccessionNumber = f"ACC{seed:06d}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        ds.Modality, ds.BodyPartExamined = phantom.modality, phantom.region
        ds.SeriesDescription = f"{phantom.region} axial"
        ds.Manufacturer = "triage-node phantom generator"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.PatientPosition = "HFS"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        zpos = k * phantom.slice_spacing - nz * phantom.slice_spacing / 2
        half = lambda n: round(-(n / 2) * phantom.pixel_spacing, 4)
        ds.ImagePositionPatient = [half(cols), half(rows), round(zpos, 3)]
        ds.SliceLocation = round(zpos, 3)
        ds.SliceThickness = round(phantom.slice_spacing, 4)
        ds.PixelSpacing = [round(phantom.pixel_spacing, 5)] * 2
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        if phantom.modality == "CT":
            ds.PixelRepresentation, ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 1, -1024, "HU"
        else:
            ds.PixelRepresentation = 0
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "", "O", ""
        ds.StudyID, ds.PositionReferenceIndicator, ds.AcquisitionNumber = "1", "", 1
        if phantom.modality == "CT":
            ds.KVP = "120"
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
            ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = "2D", "15", "500", 1
            ds.MagneticFieldStrength, ds.ImagingFrequency = "1.5", "63.9"
        ds.PixelData = np.ascontiguousarray(phantom.volume[k]).tobytes()
        ds.save_as(out / f"IM{order[k]:05d}.dcm", enforce_file_format=True) if _new_pydicom() else \
            pydicom.dcmwrite(out / f"IM{order[k]:05d}.dcm", ds, write_like_original=False)
    return study


def _new_pydicom():
    return int(pydicom.__version__.split(".")[0]) >= 3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--region", choices=["CHEST", "ABDOMEN", "HEAD"])
    ap.add_argument("--lesions", help="comma-separated labels, e.g. 'liver tumor,kidney tumor'; "
                                      "'none' for a study without lesions; default: 0-2 random ones")
    ap.add_argument("--slices", type=int)
    ap.add_argument("--masks", help="also write the lesion masks to this .npz")
    ap.add_argument("--variant", choices=["default", "broad"], default="default",
                    help="broad: the spec's whole range (tools/phantoms/phantom.py, issue 15)")
    a = ap.parse_args()
    labels = None if not a.lesions else [] if a.lesions == "none" else a.lesions.split(",")
    ph = make_phantom(a.seed, a.region, labels=labels, slices=a.slices, variant=a.variant)
    study = write_study(a.out, ph, a.seed)
    if a.masks:
        np.savez_compressed(a.masks, **{f"{i}:{l.label}": l.mask for i, l in enumerate(ph.lesions)})
    print(study, ph.region, ph.volume.shape, [(l.label, round(l.diameter_mm, 1)) for l in ph.lesions])


if __name__ == "__main__":
    main()
