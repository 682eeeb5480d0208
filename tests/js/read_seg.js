// Reads a DICOM SEG with dcmjs (the library OHIF loads SEG with) and prints, as JSON, what a
// viewer needs to place it: the segments, and per frame its segment, source image, position and
// the set pixels (count and index sum, compared voxel for voxel by the Python test).
"use strict";
const fs = require("fs");
const dcmjs = require("dcmjs");

const buffer = fs.readFileSync(process.argv[2]);
const message = dcmjs.data.DicomMessage.readFile(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length));
const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(message.dict);
const asArray = (x) => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
const rows = ds.Rows, columns = ds.Columns, plane = rows * columns;
const frames = asArray(ds.PerFrameFunctionalGroupsSequence);
const packed = new Uint8Array(asArray(ds.PixelData)[0]);
const bits = dcmjs.data.BitArray.unpack(packed);
const out = {
  sop_class_uid: ds.SOPClassUID,
  study_uid: ds.StudyInstanceUID,
  frame_of_reference_uid: ds.FrameOfReferenceUID,
  rows, columns,
  number_of_frames: Number(ds.NumberOfFrames),
  segments: asArray(ds.SegmentSequence).map((s) => ({ number: s.SegmentNumber, label: s.SegmentLabel })),
  frames: frames.map((fg, f) => {
    const source = asArray(asArray(fg.DerivationImageSequence)[0].SourceImageSequence)[0];
    let count = 0, index_sum = 0;
    for (let p = 0; p < plane; ++p) if (bits[f * plane + p]) { ++count; index_sum += p; }
    return {
      segment: asArray(fg.SegmentIdentificationSequence)[0].ReferencedSegmentNumber,
      sop_instance_uid: source.ReferencedSOPInstanceUID,
      frame: source.ReferencedFrameNumber === undefined ? 0 : Number(source.ReferencedFrameNumber),
      position: asArray(fg.PlanePositionSequence)[0].ImagePositionPatient.map(Number),
      count, index_sum,
    };
  }),
};
process.stdout.write(JSON.stringify(out));
