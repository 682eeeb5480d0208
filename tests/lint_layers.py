#!/usr/bin/python3
"""Fails when an #include crosses the layer rules of STYLE.md.

core includes nothing of ours; layer-1 libraries (config, storage, dicom_io, pipeline) include
only core; daemon may include everything. Third-party: DCMTK only in dicom_io, Torch only in
pipeline, SQLite only in storage, toml++ only in config, Asio/Beast only in daemon.
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
ours = {"core", "config", "storage", "dicom_io", "pipeline", "daemon"}
allowed_ours = {
    "core": {"core"},
    "config": {"core", "config"},
    "storage": {"core", "storage"},
    "dicom_io": {"core", "dicom_io"},
    "pipeline": {"core", "pipeline"},
    "daemon": ours,
}
third_party = {"dcmtk/": "dicom_io", "torch/": "pipeline", "ATen/": "pipeline", "c10/": "pipeline",
               "sqlite3.h": "storage", "toml++/": "config", "boost/": "daemon",
               "systemd/": "daemon"}
include = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')
errors = []
for lib in ours:
    for path in sorted((root / lib).rglob("*")):
        if path.suffix not in (".h", ".cpp", ".hpp", ".cc"):
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = include.match(line)
            if not m:
                continue
            inc = m.group(1)
            top = inc.split("/")[0]
            if top in ours and top not in allowed_ours[lib]:
                errors.append(f"{path.relative_to(root)}:{n}: {lib} must not include {inc}")
            for prefix, owner in third_party.items():
                if inc.startswith(prefix) and lib != owner:
                    errors.append(f"{path.relative_to(root)}:{n}: {inc} belongs in {owner}/ only")
for e in errors:
    print(e)
print(f"lint_layers: {len(errors)} violation(s)")
sys.exit(1 if errors else 0)
