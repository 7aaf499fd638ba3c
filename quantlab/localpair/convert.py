"""Re-encode a GGUF model file to BF16 or Q4_0 with the ``gguf`` package (numpy only).

Every metadata field is copied with its exact value type (string arrays, the chat template,
int32 token types…), ``general.file_type`` is set to the target, and each tensor is
dequantized to float32 and quantized again. 1-D tensors (norms) stay F32, as llama.cpp's
own quantizer keeps them. Tensors are written one at a time (header and tensor table
first), so memory holds one tensor, and progress can be reported per tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gguf import (
    GGMLQuantizationType,
    GGUFReader,
    GGUFValueType,
    GGUFWriter,
    LlamaFileType,
)
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quant_shape_to_byte_shape, quantize

#: Targets this module writes, with the file type llama.cpp reads from the header.
FILE_TYPES: dict[GGMLQuantizationType, LlamaFileType] = {
    GGMLQuantizationType.BF16: LlamaFileType.MOSTLY_BF16,
    GGMLQuantizationType.Q4_0: LlamaFileType.MOSTLY_Q4_0,
}

#: Fields the writer sets itself (header counts, architecture) and must not be copied.
_WRITER_OWNED = ("GGUF.",)
_ARCH = "general.architecture"
_FILE_TYPE = "general.file_type"

#: fraction in [0, 1] of the tensor bytes done
TensorProgress = Callable[[float], None]


class ConvertError(Exception):
    """The source cannot be converted, or the written file does not read back right."""


def _kept(name: str) -> bool:
    """Whether a converted file copies this field (the rest the writer sets itself)."""
    return not name.startswith(_WRITER_OWNED) and name not in (_ARCH, _FILE_TYPE)


def _raw_fields(reader: GGUFReader) -> dict[str, bytes]:
    """name -> the field's exact encoding (key, type tags, value) for every kept field.
    Comparing encodings checks types and values at once, and is ~40x faster than decoding
    the 49k-entry vocabulary and merge lists."""
    return {
        name: b"".join(p.tobytes() for p in f.parts)
        for name, f in reader.fields.items()
        if _kept(name)
    }


def _target_type(shape: tuple[int, ...], target: GGMLQuantizationType) -> GGMLQuantizationType:
    """The type one tensor is written in: norms and biases stay F32; a tensor whose rows do
    not split into whole quant blocks stays BF16 (none does in SmolLM2)."""
    if len(shape) <= 1:
        return GGMLQuantizationType.F32
    block, _ = GGML_QUANT_SIZES[target]
    if shape[-1] % block:
        return GGMLQuantizationType.BF16
    return target


def _encode(x: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    if qtype == GGMLQuantizationType.F32:
        return np.ascontiguousarray(x, dtype=np.float32)
    return quantize(np.ascontiguousarray(x, dtype=np.float32), qtype)


def read(path: Path) -> GGUFReader:
    """Open a GGUF file (memory-mapped; parsing the 100k vocabulary fields takes ~2 s, so
    callers pass the reader on instead of opening a file twice)."""
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise ConvertError(f"{path.name}: not a readable GGUF file ({exc})") from exc
    if _ARCH not in reader.fields:
        raise ConvertError(f"{path.name}: no {_ARCH} field; not a model file")
    return reader


def convert(
    reader: GGUFReader,
    dst: Path,
    target: GGMLQuantizationType,
    progress: TensorProgress | None = None,
) -> None:
    """Write the model of ``reader`` re-encoded as ``target`` to ``dst`` (the caller picks a
    temp name and commits it; this function only writes)."""
    if target not in FILE_TYPES:
        raise ConvertError(f"unsupported target {target.name}")
    arch = str(reader.fields[_ARCH].contents())
    writer = GGUFWriter(dst, arch)
    file_type_written = False
    for name, f in reader.fields.items():
        if name == _FILE_TYPE:  # keep the source's field order
            writer.add_uint32(_FILE_TYPE, int(FILE_TYPES[target]))
            file_type_written = True
        elif not _kept(name):
            continue
        elif f.types[0] == GGUFValueType.ARRAY:
            writer.add_key_value(name, f.contents(), GGUFValueType.ARRAY, sub_type=f.types[-1])
        else:
            writer.add_key_value(name, f.contents(), f.types[0])
    if not file_type_written:
        writer.add_uint32(_FILE_TYPE, int(FILE_TYPES[target]))

    # The tensor table goes into the header before any data: work out each tensor's type
    # and byte size from its shape, then stream the data tensor by tensor.
    plan: list[tuple[Any, GGMLQuantizationType]] = []
    for t in reader.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))  # numpy order (rows, cols)
        qtype = _target_type(shape, target)
        if qtype == GGMLQuantizationType.F32:
            nbytes = int(np.prod(shape)) * 4
            writer.add_tensor_info(t.name, shape, np.dtype(np.float32), nbytes)
        else:
            byte_shape = quant_shape_to_byte_shape(shape, qtype)
            nbytes = int(np.prod(byte_shape))
            writer.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), nbytes, qtype)
        plan.append((t, qtype))
    total = sum(int(t.n_elements) for t, _ in plan) or 1

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    done = 0
    for t, qtype in plan:
        x = dequantize(t.data, t.tensor_type)
        writer.write_tensor_data(_encode(x, qtype))
        done += int(t.n_elements)
        if progress is not None:
            progress(done / total)
    writer.close()


def check_round_trip(a: GGUFReader, dst: Path, target: GGMLQuantizationType) -> GGUFReader:
    """Raise ConvertError unless ``dst`` holds every metadata field of the source ``a`` with
    the same types and values, the target file type, and the same tensors with the same
    shapes and the planned types. Returns the reader of ``dst``."""
    b = read(dst)
    want, got = _raw_fields(a), _raw_fields(b)
    for name in sorted(want.keys() | got.keys()):
        if name not in got:
            raise ConvertError(f"{dst.name}: field {name} was not written")
        if name not in want:
            raise ConvertError(f"{dst.name}: unexpected field {name}")
        if want[name] != got[name]:
            raise ConvertError(f"{dst.name}: field {name} changed type or value")
    if b.fields[_ARCH].contents() != a.fields[_ARCH].contents():
        raise ConvertError(f"{dst.name}: architecture changed")
    if int(b.fields[_FILE_TYPE].contents()) != int(FILE_TYPES[target]):
        raise ConvertError(f"{dst.name}: general.file_type is not {target.name}")
    shapes_a = [(t.name, tuple(t.shape)) for t in a.tensors]
    shapes_b = [(t.name, tuple(t.shape)) for t in b.tensors]
    if shapes_a != shapes_b:
        raise ConvertError(f"{dst.name}: tensor names or shapes differ from the source")
    for t in b.tensors:
        want_type = _target_type(tuple(int(d) for d in reversed(t.shape)), target)
        if t.tensor_type != want_type:
            raise ConvertError(f"{dst.name}: {t.name} is {t.tensor_type.name}, not {want_type}")
    return b
