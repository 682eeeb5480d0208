"""A reader and writer of the safetensors format, written for this project (no `safetensors` package).

Layout: 8 bytes little-endian u64 N, then N bytes of JSON header
{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}},
then the data section; offsets are relative to its start, tensors are row-major little-endian.

The reader reads one tensor at a time from disk (seek + readinto a fresh buffer), so loading a 4 GB
checkpoint into a model never holds more than the model plus the tensor being read. bf16 has no numpy
type: its bytes are read as int16 and viewed as torch.bfloat16.
"""
import json
import struct
import sys

import numpy as np
import torch

DTYPES = {  # safetensors name -> (torch dtype, numpy dtype used to read the raw bytes, itemsize)
    "F64": (torch.float64, np.float64, 8), "F32": (torch.float32, np.float32, 4),
    "F16": (torch.float16, np.float16, 2), "BF16": (torch.bfloat16, np.int16, 2),
    "I64": (torch.int64, np.int64, 8), "I32": (torch.int32, np.int32, 4), "I16": (torch.int16, np.int16, 2),
    "I8": (torch.int8, np.int8, 1), "U8": (torch.uint8, np.uint8, 1), "BOOL": (torch.bool, np.bool_, 1),
}
NAME_OF = {v[0]: k for k, v in DTYPES.items()}
MAX_HEADER = 100 * 1024 * 1024
assert sys.byteorder == "little", "safetensors_io assumes a little-endian host"


class SafetensorsError(ValueError):
    pass


class SafetensorsFile:
    """Read access to one .safetensors file. `names()`, `shape(name)`, `dtype(name)` come from the
    header only; `get(name)` reads that tensor from disk into a new CPU tensor. Not thread-safe (one
    open file handle); use as a context manager or call close()."""

    def __init__(self, path):
        self.path = str(path)
        self._f = open(self.path, "rb")
        raw = self._f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{self.path}: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER:
            raise SafetensorsError(f"{self.path}: header length {n} is not plausible")
        try:
            header = json.loads(self._f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsError(f"{self.path}: header is not JSON: {e}") from e
        self.metadata = header.pop("__metadata__", {}) or {}
        self._data_start = 8 + n
        self._f.seek(0, 2)
        data_len = self._f.tell() - self._data_start
        self._entries = {}
        for name, e in header.items():
            if e.get("dtype") not in DTYPES:
                raise SafetensorsError(f"{self.path}: tensor {name} has unsupported dtype {e.get('dtype')}")
            begin, end = e["data_offsets"]
            count = int(np.prod(e["shape"], dtype=np.int64))
            if end - begin != count * DTYPES[e["dtype"]][2] or not 0 <= begin <= end <= data_len:
                raise SafetensorsError(f"{self.path}: tensor {name} has inconsistent data_offsets")
            self._entries[name] = (e["dtype"], tuple(e["shape"]), begin, end)

    def names(self):
        return list(self._entries)

    def shape(self, name):
        return self._entries[name][1]

    def dtype(self, name):
        return DTYPES[self._entries[name][0]][0]

    def get(self, name):
        dt, shape, begin, end = self._entries[name]
        tdtype, ndtype, _ = DTYPES[dt]
        buf = np.empty(end - begin, dtype=np.uint8)
        self._f.seek(self._data_start + begin)
        if self._f.readinto(memoryview(buf)) != end - begin:
            raise SafetensorsError(f"{self.path}: tensor {name} is truncated")
        t = torch.from_numpy(buf.view(ndtype).reshape(shape))
        return t.view(torch.bfloat16) if tdtype == torch.bfloat16 else t

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_header(f, specs, metadata=None):
    """Writes the header for `specs` = [(name, torch dtype, shape), ...] in that order and returns the
    byte size of each tensor; the caller then writes the tensors' bytes in the same order."""
    header, offset, sizes = {}, 0, []
    for name, dtype, shape in specs:
        size = int(np.prod(shape, dtype=np.int64)) * DTYPES[NAME_OF[dtype]][2]
        header[name] = {"dtype": NAME_OF[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
        sizes.append(size)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # data section 8-byte aligned, as the reference writer does
    f.write(struct.pack("<Q", len(raw)))
    f.write(raw)
    return sizes


def tensor_array(t):
    """A numpy view of a CPU tensor's row-major bytes (bf16 through an int16 view); little-endian
    hosts only, as torch itself."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy()


def write_streaming(path, specs, produce, metadata=None):
    """Writes a safetensors file tensor by tensor: `produce(name, dtype, shape)` returns each tensor
    (exactly that dtype and shape) when its turn comes, so the whole set is never in memory."""
    with open(path, "wb") as f:
        sizes = write_header(f, specs, metadata)
        for (name, dtype, shape), size in zip(specs, sizes):
            t = produce(name, dtype, shape)
            if t.dtype != dtype or tuple(t.shape) != tuple(shape):
                raise SafetensorsError(f"tensor {name}: produced {t.dtype} {tuple(t.shape)}, declared {dtype} {shape}")
            data = tensor_array(t)
            assert data.nbytes == size
            f.write(memoryview(data.reshape(-1)).cast("B"))


def save_file(tensors, path, metadata=None):
    """Writes a dict name -> tensor (in the dict's order)."""
    specs = [(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()]
    write_streaming(path, specs, lambda n, d, s: tensors[n], metadata)


def load_file(path):
    """Reads every tensor into a dict (small files only)."""
    with SafetensorsFile(path) as f:
        return {n: f.get(n) for n in f.names()}
