"""What a GGUF file holds, read from its header: how many tensors of each GGML type.

    from loralab.export.gguf_header import gguf_tensor_types
    gguf_tensor_types("runs/a/gguf/model.Q4_K_M.gguf")   # {"Q4_K": 1, "Q5_0": 11, "Q6_K": 1, "Q8_0": 2, "F32": 5}

The header is the magic, the version, the tensor and key-value counts, the key-value section (the
tokenizer's vocabulary and merges among it) and then one record per tensor (name, shape, type, offset).
``gguf.GGUFReader`` builds a view of every key-value field before it gets to the tensors: 1.6-1.8 s for a
file with the embedded model's 49,152-token vocabulary (AVX-512 kind), longer for larger vocabularies.
Here each value is skipped by its length and only the tensor records are read: 0.015 s for the same
files, the same counts. The value types, their widths and the tensor types are the ``gguf`` package's own
(``GGUFValueType``, ``GGUFReader.gguf_scalar_to_np``, ``GGMLQuantizationType``); tests/test_gguf_header.py
checks the counts against ``GGUFReader`` on files that ``gguf.GGUFWriter`` writes, little- and big-endian.
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from pathlib import Path

import numpy

MAGIC = b"GGUF"


class GGUFHeaderError(ValueError):
    """The file is not a GGUF file this reader understands (with the reason)."""


class _Header:
    """A cursor over the mapped file, in the file's byte order."""

    def __init__(self, data: mmap.mmap, order: str):
        from gguf import GGUFReader, GGUFValueType

        self.data, self.order, self.offset = data, order, 4  # after the magic
        # bytes of each fixed-width value type; a STRING or an ARRAY carries its length instead
        self.fixed_sizes = {value_type: numpy.dtype(scalar).itemsize
                            for value_type, scalar in GGUFReader.gguf_scalar_to_np.items()}
        self.string, self.array = GGUFValueType.STRING, GGUFValueType.ARRAY

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from(self.order + fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def skip_string(self) -> None:
        length = self.unpack("Q")  # then that many bytes of UTF-8
        self.offset += length

    def skip_value(self, value_type: int) -> None:
        if value_type in self.fixed_sizes:
            self.offset += self.fixed_sizes[value_type]
        elif value_type == self.string:
            self.skip_string()
        elif value_type == self.array:
            item_type, count = self.unpack("I"), self.unpack("Q")
            if item_type in self.fixed_sizes:
                self.offset += count * self.fixed_sizes[item_type]
            else:
                for _ in range(count):
                    self.skip_value(item_type)
        else:
            raise GGUFHeaderError(f"unknown value type {value_type} at byte {self.offset}")


def gguf_tensor_types(path: str | Path) -> dict[str, int]:
    """How many tensors of each GGML type the file holds (for example ``{"Q4_K": 30, "Q5_0": 150, ...}``)."""
    from gguf import GGMLQuantizationType

    if Path(path).stat().st_size < 24:  # magic, version and the two counts
        raise GGUFHeaderError(f"{path} is not a GGUF file (it is shorter than a GGUF header)")
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != MAGIC:
            raise GGUFHeaderError(f"{path} is not a GGUF file (it does not start with {MAGIC!r})")
        order = "<" if struct.unpack_from("<I", data, 4)[0] & 0xFFFF else ">"  # a big-endian version reads 0xXX000000
        header = _Header(data, order)
        version = header.unpack("I")
        if version < 2:
            raise GGUFHeaderError(f"{path} is GGUF version {version}; versions 2 and later are read")
        tensor_count, kv_count = header.unpack("Q"), header.unpack("Q")
        try:
            for _ in range(kv_count):
                header.skip_string()  # the key
                header.skip_value(header.unpack("I"))
            types: Counter[str] = Counter()
            for _ in range(tensor_count):
                header.skip_string()  # the name
                dimensions = header.unpack("I")
                header.offset += 8 * dimensions
                types[GGMLQuantizationType(header.unpack("I")).name] += 1
                header.offset += 8  # the data offset
        except struct.error as error:
            raise GGUFHeaderError(f"{path}: the header ends early ({error})") from None
        except ValueError as error:  # a tensor type this gguf package does not know
            raise GGUFHeaderError(f"{path}: {error}") from None
    return dict(types)
