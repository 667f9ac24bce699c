"""loralab.export.gguf_header: the tensor types of a GGUF file from its header, as gguf.GGUFReader counts them.

The files are written here by the gguf package's own GGUFWriter (little- and big-endian): every kind of
key-value the format has, a vocabulary-sized string array, and tensors in float and quantized types. The
GGUF files of real exports are compared in tests/test_merge_dequantized.py (through the export's
``tensor_types``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import gguf
import numpy as np
import pytest

from loralab.export.gguf_header import GGUFHeaderError, gguf_tensor_types


def _write(path: Path, endianess) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama", endianess=endianess)
    writer.add_name("header test")
    writer.add_uint8("t.u8", 7)
    writer.add_int16("t.i16", -3)
    writer.add_uint32("t.u32", 123456)
    writer.add_float32("t.f32", 0.5)
    writer.add_bool("t.bool", True)
    writer.add_uint64("t.u64", 2**40)
    writer.add_float64("t.f64", -1.25)
    writer.add_string("t.text", "naïve — ünïcode")
    writer.add_token_list([f"tok{i}é" for i in range(5000)])  # an array of strings, as the vocabulary is
    writer.add_array("t.ints", list(range(300)))
    writer.add_array("t.floats", [0.25] * 17)
    rng = np.random.default_rng(0)
    writer.add_tensor("a.weight", rng.standard_normal((4, 64)).astype(np.float32))
    writer.add_tensor("b.weight", rng.standard_normal((2, 3, 32)).astype(np.float16))
    for name in ("c.weight", "d.weight"):
        q8 = gguf.quants.quantize(rng.standard_normal((8, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("endianess", ["LITTLE", "BIG"])
def test_the_counts_are_gguf_readers(tmp_path, endianess):
    path = _write(tmp_path / "t.gguf", gguf.GGUFEndian[endianess])
    expected = dict(Counter(tensor.tensor_type.name for tensor in gguf.GGUFReader(str(path)).tensors))
    assert expected == {"F32": 1, "F16": 1, "Q8_0": 2}
    assert gguf_tensor_types(path) == expected


def test_a_file_that_is_not_gguf_or_ends_early_is_refused_with_the_reason(tmp_path):
    path = _write(tmp_path / "t.gguf", gguf.GGUFEndian.LITTLE)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(GGUFHeaderError, match="shorter than a GGUF header"):
        gguf_tensor_types(tmp_path / "empty.gguf")
    (tmp_path / "other.gguf").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(GGUFHeaderError, match="is not a GGUF file"):
        gguf_tensor_types(tmp_path / "other.gguf")
    (tmp_path / "cut.gguf").write_bytes(path.read_bytes()[:30_000])  # inside the vocabulary
    with pytest.raises(GGUFHeaderError, match="the header ends early"):
        gguf_tensor_types(tmp_path / "cut.gguf")
