"""Reading the node's outputs back with pydicom, independently of the C++ code: a binary DICOM SEG
mapped onto its source series (by referenced SOP instance and frame, positions checked), and the
node's RLE segment maps. Used by tests/integration and tools/model/evaluate.py (which scores the
model from the SEG, as a PACS user would see it)."""
import pathlib
import struct

import numpy as np
import pydicom


def read_segmap(path):
    """The RLE segment map the pipeline writes (core/segment_map.h): slices x rows x columns."""
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"TRSEGRL1", f"{path} is not a segment map"
    cols, rows, slices = struct.unpack_from("<3i", data, 8)
    out, pos = [], 20
    while pos < len(data):
        out.append(np.full(struct.unpack_from("<I", data, pos + 1)[0], data[pos], np.uint8))
        pos += 5
    return np.concatenate(out).reshape(slices, rows, cols)


def source_slices(files):
    """[(sop_instance_uid, frame, position)] of a series' slices, sorted along the slice normal the
    way the node sorts them (frame 0 = single-frame instance); of several slices at one position
    (repeated dynamics, echoes) the first in file order is kept, as the node does."""
    slices = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if "PerFrameFunctionalGroupsSequence" in ds:
            shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
            for k, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
                iop = (fg.PlaneOrientationSequence[0] if "PlaneOrientationSequence" in fg
                       else shared.PlaneOrientationSequence[0]).ImageOrientationPatient
                ipp = fg.PlanePositionSequence[0].ImagePositionPatient
                slices.append((ds.SOPInstanceUID, k + 1 if frames > 1 else 0, [float(x) for x in ipp], iop))
        else:
            slices.append((ds.SOPInstanceUID, 0, [float(x) for x in ds.ImagePositionPatient], ds.ImageOrientationPatient))
    iop = np.array([float(x) for x in slices[0][3]])
    normal = np.cross(iop[:3], iop[3:])
    slices.sort(key=lambda s: float(np.dot(s[2], normal)))
    kept = []
    for sop, frame, pos, _ in slices:
        if not kept or float(np.dot(np.subtract(pos, kept[-1][2]), normal)) > 1e-3:
            kept.append((sop, frame, pos))
    return kept


def read_seg(path):
    """(dataset, segment labels {number: label}, frames [{segment, sop, frame, position, mask}])."""
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4", f"{path} is not a Segmentation"
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    labels = {int(s.SegmentNumber): str(s.SegmentLabel) for s in ds.SegmentSequence}
    frames = []
    for k, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        src = fg.DerivationImageSequence[0].SourceImageSequence[0]
        frames.append({"segment": int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
                       "sop": str(src.ReferencedSOPInstanceUID),
                       "frame": int(getattr(src, "ReferencedFrameNumber", 0) or 0),
                       "position": [float(x) for x in fg.PlanePositionSequence[0].ImagePositionPatient],
                       "mask": pixels[k].astype(bool)})
    return ds, labels, frames


def seg_to_volume(seg_path, slices, position_tolerance=1e-3):
    """The SEG as a label volume on the source slices [(sop, frame, position)] (from source_slices):
    value = segment number. Raises if a frame references no source slice or its position differs."""
    ds, labels, frames = read_seg(seg_path)
    index = {(sop, frame): (z, pos) for z, (sop, frame, pos) in enumerate(slices)}
    volume = np.zeros((len(slices), ds.Rows, ds.Columns), np.uint8)
    for k, f in enumerate(frames):
        z, pos = index.get((f["sop"], f["frame"]), (None, None))
        if z is None:
            raise AssertionError(f"frame {k + 1} references {f['sop']} frame {f['frame']}, not in the source series")
        if max(abs(a - b) for a, b in zip(pos, f["position"])) > position_tolerance:
            raise AssertionError(f"frame {k + 1}: position {f['position']} but its source slice is at {pos}")
        volume[z][f["mask"]] = f["segment"]
    return volume, labels
