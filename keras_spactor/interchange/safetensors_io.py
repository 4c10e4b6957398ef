"""Reading and writing `.safetensors` files with numpy alone.

The format (https://huggingface.co/docs/safetensors): an 8-byte
little-endian header length, a JSON header mapping each tensor's name to its
`dtype`, `shape` and `data_offsets` (into the byte buffer that follows), an
optional `__metadata__` of strings, then the tensors' bytes, row-major and
little-endian. Written here rather than through the `safetensors` package
so that the package needs no extra dependency; transformers reads the
result as it reads its own files.
"""

import json
import os
import struct

import numpy as np

_TO_NUMPY = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}
_FROM_NUMPY = {np.dtype(v).str.lstrip("<|"): k for k, v in _TO_NUMPY.items()}

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# transformers' `save_pretrained` default shard size (`max_shard_size`).
DEFAULT_MAX_SHARD_BYTES = 50 * 1000**3


def _dtype_name(array):
    name = _FROM_NUMPY.get(array.dtype.str.lstrip("<|"))
    if name is None:
        raise ValueError(f"safetensors has no dtype for numpy {array.dtype}.")
    return name


def write_file(path, tensors, metadata=None):
    """Write `{name: numpy array}` to one `.safetensors` file.

    Args:
        path: str. The file to write.
        tensors: dict of str to numpy arrays.
        metadata: optional dict of str to str (transformers expects
            `{"format": "pt"}`).
    """
    header = {}
    offset = 0
    arrays = {}
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        arrays[name] = array
        header[name] = {
            "dtype": _dtype_name(array),
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    if metadata:
        header["__metadata__"] = dict(metadata)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # Pad the header with spaces so the data starts 8-byte aligned.
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for array in arrays.values():
            f.write(array.tobytes())


def _bfloat16_to_float32(raw):
    # bfloat16 is the upper half of a float32.
    return (raw.astype("<u4") << 16).view("<f4")


def read_file(path):
    """Read one `.safetensors` file into `{name: numpy array}`.

    bfloat16 tensors come back as float32 (numpy has no bfloat16); that is
    exact.
    """
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = info["dtype"]
        if dtype == "BF16":
            raw = np.frombuffer(data[start:end], dtype="<u2")
            array = _bfloat16_to_float32(raw)
        elif dtype in _TO_NUMPY:
            array = np.frombuffer(data[start:end], dtype=_TO_NUMPY[dtype])
        else:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype}.")
        tensors[name] = array.reshape(info["shape"]).copy()
    return tensors


def save_sharded(directory, tensors, max_shard_bytes=DEFAULT_MAX_SHARD_BYTES):
    """Write tensors as transformers does: `model.safetensors`, or shards
    `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`
    when they exceed `max_shard_bytes`.

    Returns:
        The list of files written (names inside `directory`).
    """
    shards = [{}]
    size = 0
    for name in sorted(tensors):
        nbytes = np.asarray(tensors[name]).nbytes
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    metadata = {"format": "pt"}
    if len(shards) == 1:
        write_file(os.path.join(directory, SINGLE_FILE), shards[0], metadata)
        return [SINGLE_FILE]
    names = []
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_file(os.path.join(directory, name), shard, metadata)
        names.append(name)
        weight_map.update({key: name for key in shard})
    total = sum(np.asarray(t).nbytes for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(directory, INDEX_FILE), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
    return names + [INDEX_FILE]


def load_directory(directory):
    """Read all tensors of a transformers checkpoint directory (a single
    `model.safetensors` or the shards an index names).

    Raises:
        ValueError: if the directory holds no safetensors weights.
    """
    index_path = os.path.join(directory, INDEX_FILE)
    if os.path.exists(index_path):
        with open(index_path) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.exists(os.path.join(directory, SINGLE_FILE)):
        files = [SINGLE_FILE]
    else:
        raise ValueError(
            f"{directory} holds no {SINGLE_FILE} (or {INDEX_FILE}): only "
            "safetensors checkpoints are read. Convert a pytorch_model.bin "
            "with transformers: `T5ForConditionalGeneration.from_pretrained"
            "(dir).save_pretrained(new_dir)`."
        )
    tensors = {}
    for name in files:
        tensors.update(read_file(os.path.join(directory, name)))
    return tensors
