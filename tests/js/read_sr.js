// Reads a TID 1500 SR with dcmjs and prints, as JSON, its measurement groups the way a viewer
// importing measurements walks them: tracking identifier, referenced SEG instance and segment,
// and the numeric measurements with their units.
"use strict";
const fs = require("fs");
const dcmjs = require("dcmjs");

const buffer = fs.readFileSync(process.argv[2]);
const message = dcmjs.data.DicomMessage.readFile(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length));
const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(message.dict);
const asArray = (x) => (x === undefined ? [] : Array.isArray(x) ? x : [x]);
const code = (item) => asArray(item.ConceptNameCodeSequence)[0].CodeValue;
const groups = [];
for (const container of asArray(ds.ContentSequence).filter((i) => code(i) === "126010")) {
  for (const group of asArray(container.ContentSequence).filter((i) => code(i) === "125007")) {
    const items = asArray(group.ContentSequence);
    const segRef = items.find((i) => code(i) === "121191");
    const sop = segRef ? asArray(segRef.ReferencedSOPSequence)[0] : undefined;
    groups.push({
      tracking: (items.find((i) => code(i) === "112039") || {}).TextValue,
      seg_sop_instance_uid: sop && sop.ReferencedSOPInstanceUID,
      segment: sop && Number(sop.ReferencedSegmentNumber),
      measurements: items.filter((i) => i.ValueType === "NUM").map((i) => {
        const v = asArray(i.MeasuredValueSequence)[0];
        return { name: asArray(i.ConceptNameCodeSequence)[0].CodeMeaning, value: Number(v.NumericValue),
                 unit: asArray(v.MeasurementUnitsCodeSequence)[0].CodeValue };
      }),
    });
  }
}
process.stdout.write(JSON.stringify({ sop_class_uid: ds.SOPClassUID, study_uid: ds.StudyInstanceUID, groups }));
