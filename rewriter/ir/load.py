"""Reading and writing ONNX model files.

``load_model`` turns every way a model file can be wrong (missing, empty, not
ONNX, missing external data, failing the ONNX checker) into a ``UserError``
that names the file, so the CLI never shows a library traceback for bad input.
``save_model`` never leaves a half-written file behind and writes the same
bytes for the same model.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import mmap
import os
import re
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
import onnx
from google.protobuf.message import DecodeError, EncodeError
from onnx import helper, numpy_helper

from rewriter.errors import UserError
from rewriter.io_utils import check_output_path, folder_lock, rename_into_place, write_temporary
from rewriter.ir.external import file_bytes, file_chunks, in_file, keep_in_file, tensors
from rewriter.ir.names import subgraphs
from rewriter.ir.order import sort_nodes

# Protobuf refuses to serialize messages over 2 GiB; leave headroom for the graph itself.
LARGE_MODEL_BYTES = int(1.8 * 1024**3)
# From this much external data on, a model's external tensors stay in their file (rewriter.ir.external)
# instead of being read in: the weights are then in memory only where a computation reads them.
KEEP_IN_FILE_BYTES = LARGE_MODEL_BYTES
# ... each of those tensors of this size or more, that is.
_KEEP_MIN_BYTES = 64 << 10
# Tensors smaller than this stay inline when a large model is saved with external data.
_EXTERNAL_MIN_BYTES = 1024
_TOPO_ERROR = "topologically sorted"



def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Load an ONNX model, its external data (relative to the model's folder) included.

    The format follows the file extension as in ``onnx.load`` (``.onnx`` is binary
    protobuf; ``.onnxtxt``/``.textproto``/``.json`` are text forms). A model whose
    only fault is nodes out of topological order (onnxruntime accepts those) is
    returned sorted rather than rejected.

    Args:
        path: the model file.

    Returns:
        The model, checked with ``onnx.checker.check_model(full_check=False)``.

    Raises:
        UserError: the file is missing, empty, not an ONNX model, its external
            data cannot be read, or it fails the ONNX checker.
    """
    p = Path(path)
    _check_readable(p)
    checked = _file_passes_checker(p)
    model, as_stored = _parse(p)
    # The file checked is exactly the model parsed when no external data was read into it.
    return model if checked and as_stored else _checked(model, p, as_stored)


def _file_passes_checker(p: Path) -> bool:
    """Does a binary ``.onnx`` file pass the checker (which reads the file itself)? False for any failure.

    Run before the model is parsed, the checker's memory (it builds its own copy of the model, about 1.6 GB
    for a million nodes) is freed to the allocator before the parsed model takes its own, which then reuses
    it instead of touching as much fresh memory again (measured at a million nodes: 240k fewer page faults).
    A model that fails goes through ``_checked``, which says why (or sorts one whose nodes are out of
    order); one with external data read in is checked again with its data, as the parsed model it is.
    """
    if not _binary_form(p):
        return False
    try:
        onnx.checker.check_model(os.fspath(p), full_check=False)
    except Exception:  # noqa: BLE001 - any failure is reported by _checked, on the parsed model
        return False
    return True


def _check_readable(p: Path) -> None:
    if not p.exists():
        raise UserError(f"{p}: no such model file; check the path (and the working directory).")
    if p.is_dir():
        raise UserError(f"{p}: is a folder, not an ONNX model file; pass the .onnx file inside it.")
    if p.stat().st_size == 0:
        raise UserError(f"{p}: the file is empty; re-export or re-download the model.")


def _parse(p: Path) -> tuple[onnx.ModelProto, bool]:
    """The model, and whether it is exactly the file's binary protobuf (no external data was read in)."""
    try:
        model = _parse_mapped(p) if _binary_form(p) else onnx.load(os.fspath(p), load_external_data=False)
    except (DecodeError, UnicodeDecodeError, ValueError, TypeError, RuntimeError) as e:
        raise UserError(
            f"{p}: not a readable ONNX model ({error_summary(e)}); "
            "pass a binary .onnx file exported by a framework (or a .onnxtxt/.textproto/.json text form)."
        ) from None
    except OSError as e:
        raise UserError(f"{p}: cannot read the file ({e.strerror or e}).") from None
    if not model.HasField("graph") or model.ir_version == 0:
        # Protobuf decodes many non-ONNX byte strings without complaint; an ONNX model always has both.
        raise UserError(
            f"{p}: not an ONNX model (no graph or IR version in it); "
            "check that the file is a model exported to ONNX and was not truncated."
        )
    try:
        read_in, kept = _load_external_data(model, p.parent)
    except (OSError, ValueError, onnx.checker.ValidationError) as e:
        raise UserError(
            f"{p}: cannot load its external data ({error_summary(e)}); "
            "keep the data files next to the model with the names the model refers to."
        ) from None
    # With tensors kept in their file, the checker reads the file (the references are not ONNX's own form);
    # with none read in, it is the model as loaded.
    return model, (kept > 0 or not read_in) and _binary_form(p)


def _binary_form(p: Path) -> bool:
    """Is the file binary protobuf by its name? (``.onnx``; onnx.load reads the text forms by theirs.)"""
    return p.suffix.lower() == ".onnx"


def _parse_mapped(p: Path) -> onnx.ModelProto:
    """A binary model parsed from the file mapped into memory, as ``onnx.load`` would parse it.

    ``onnx.load`` first reads the file into a bytes object: fresh memory the size of the file, every page of
    it zeroed by the kernel before it is filled, and all of it copied again by the parse. The mapped file is
    the page cache's own pages (250 MB of a TorchScript decoder's weights: 58k page faults and 0.12 s of
    system time fewer).
    """
    model = onnx.ModelProto()
    with p.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        with memoryview(mapped) as data:  # released before the mapping closes; the parse keeps a copy
            decoded = model.ParseFromString(data)
            size = len(data)
    if decoded is not None and decoded != size:  # onnx.load's own check
        raise DecodeError(f"Protobuf decoding consumed too few bytes: {decoded} out of {size}")
    return model


def _load_external_data(model: onnx.ModelProto, folder: Path) -> tuple[int, int]:
    """Read in the external data of every tensor stored so, or, when there is a large model's worth
    of it, keep each big such tensor in its file (``rewriter.ir.external``); how many were read in, and
    how many were kept.

    Read in, the weights would be held as protobuf bytes and copied with every copy of the model:
    several times their size at the peak, where references cost nothing until values are needed.
    """
    stored = [t for t in tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    read_in, kept = stored, 0
    if stored and model.ByteSize() + sum(_data_bytes(t) for t in stored) >= KEEP_IN_FILE_BYTES:
        # Small tensors (shapes, biases, norms' parameters) are still read in: they cost little, and shape
        # inference and constant folding see them as in a model loaded whole.
        read_in = [t for t in stored if _data_bytes(t) < _KEEP_MIN_BYTES or t.data_type == onnx.TensorProto.STRING]
        for t in stored:
            if _data_bytes(t) >= _KEEP_MIN_BYTES and t.data_type != onnx.TensorProto.STRING:
                keep_in_file(t, os.fspath(folder))
                kept += 1
    for t in read_in:
        onnx.external_data_helper.load_external_data_for_tensor(t, os.fspath(folder))
        # onnx marks the field present (= DEFAULT); clearing it makes the proto, and so the saved
        # bytes, the same as for a model stored in one file.
        t.ClearField("data_location")
    return len(read_in), kept


def _checked(model: onnx.ModelProto, p: Path, as_stored: bool = False) -> onnx.ModelProto:
    try:
        _run_checker(model, p, as_stored)
        return model
    except onnx.checker.ValidationError as e:
        first = e
    if _TOPO_ERROR in str(first):
        model = sort_nodes(model)
        try:
            _run_checker(model, None)
            return model
        except onnx.checker.ValidationError as e:
            first = e
    raise UserError(
        f"{p}: the model fails the ONNX checker: {error_summary(first)}. "
        "Re-export it, or repair it with the framework that produced it."
    ) from None


def _run_checker(model: onnx.ModelProto, p: Path | None, as_stored: bool = False) -> None:
    # Over 2 GiB the checker cannot take the proto in memory (it serializes it: a ValueError or
    # protobuf's EncodeError), but it can read the file, whose weights are in external data.
    if as_stored and p is not None:
        # The model is the file's bytes as they are: the checker reads the file itself, which costs about
        # half of serializing the loaded model again for it.
        onnx.checker.check_model(os.fspath(p), full_check=False)
        return
    if not is_large(model):
        try:
            onnx.checker.check_model(model, full_check=False)
            return
        except (ValueError, EncodeError):
            pass
    if p is not None:
        onnx.checker.check_model(os.fspath(p), full_check=False)


def error_summary(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Write a model atomically and byte-deterministically as binary protobuf.

    The bytes go to a temporary file in the destination folder, which then
    replaces ``path`` in one rename: a crash or a full disk never leaves a
    half-written model. Saving the same model twice gives identical bytes.
    Models over 1.8 GB keep their large tensors in external data next to the
    model, in ``<name>.<digest>.data`` named after its content (see
    ``_save_large``). ``model`` itself is left as it was.

    Args:
        model: the model to write.
        path: the destination file, a regular file or a new path (a symbolic link,
            a device or a folder is refused); missing parent folders are created.

    Raises:
        UserError: ``path`` is not a regular file or a new path, or the file cannot
            be written (permissions, full disk, ...).
    """
    dest = check_output_path(path)
    if not is_large(model):
        # A model that came in large may leave small (its weights quantized): one file, as any small model.
        model = _read_in(model) if file_bytes(model) else model
        tmp = write_temporary(dest, lambda f: f.write(model.SerializeToString(deterministic=True)), "the model")
        with folder_lock(dest.parent):
            rename_into_place(tmp, dest, "the model")
            _remove_other_data_files(dest, keep=None)
    else:
        _save_large(model, dest)


def save_split(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """``save_model`` as for a large model, whatever the size: tensors of 1 KB or more in the data file.

    For a runtime that maps the data file instead of holding a parse of the model's bytes.
    """
    _save_large(model, check_output_path(path))


def _read_in(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` as if loaded whole: a copy with the data of the tensors it keeps in their file read in
    (``model`` itself when it keeps none)."""
    if not file_bytes(model):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # references cost nothing to copy
    for t in tensors(copy.graph):
        if in_file(t):
            _fill(t, t)
    return copy


def _fill(t: onnx.TensorProto, target: onnx.TensorProto) -> None:
    """Give ``target`` the values of reference ``t`` as raw data, stored in the model (``t`` may be ``target``)."""
    raw = b"".join(file_chunks(t))
    for name in (*TENSOR_DATA_FIELDS, *_REFERENCE_FIELDS):
        target.ClearField(name)
    target.raw_data = raw


def is_large(model: onnx.ModelProto, limit: int | None = None) -> bool:
    """Is ``model`` a large model: at least ``limit`` bytes (default ``LARGE_MODEL_BYTES``), the tensors
    it keeps in their file (``rewriter.ir.external``) counted with the rest?"""
    in_memory, in_files = _sizes(model)
    return in_memory + in_files >= (LARGE_MODEL_BYTES if limit is None else limit)


def too_big_to_serialize(model: onnx.ModelProto, limit: int | None = None) -> bool:
    """Is ``model`` itself, without the tensors it keeps in their file, at least ``limit`` bytes (default
    ``LARGE_MODEL_BYTES``)? Such a model must be saved with external data to be handed on."""
    return _sizes(model)[0] >= (LARGE_MODEL_BYTES if limit is None else limit)


# Tensors from this size on are counted by their shape, not serialized, when a model is sized.
_SIZED_BY_SHAPE_BYTES = 1 << 20


def _sizes(model: onnx.ModelProto) -> tuple[int, int]:
    """(bytes of ``model`` serialized, bytes of the tensors it keeps in their file), without serializing it.

    protobuf's ``ByteSize`` serializes the message here (upb keeps no sizes): a transient copy of every
    weight. A model with no tensor of 1 MB or more is sized so, exactly; a larger one is sized as its
    copy without those tensors' data plus their data's bytes (within a few bytes a tensor).
    """
    try:
        if not any(_is_big(t, _SIZED_BY_SHAPE_BYTES) or in_file(t) for t in model.graph.initializer) \
                and not subgraphs(model.graph):
            return model.ByteSize(), 0  # nothing to leave out: the copy would be the whole model
        light, big = light_copy(model, _SIZED_BY_SHAPE_BYTES)
        if not big:
            return model.ByteSize(), 0
        in_files = sum(_data_bytes(t) for t, _ in big if in_file(t))
        # A tensor's data is one length-delimited field: its tag and length take at most 11 bytes.
        return light.ByteSize() + sum(_data_bytes(t) + 11 for t, _ in big if not in_file(t)), in_files
    except (ValueError, EncodeError):  # protobuf refuses even to size a message over 2 GiB
        return 1 << 62, 0


def model_digest(model: onnx.ModelProto) -> str:
    """A sha256 of the model's content, whatever its size.

    Hashed as its structure without the data of its tensors of 1 KiB or more, followed by each of those
    tensors (its fields, then its values' bytes), in order: the same model always gives the same digest,
    and any changed weight another one. Serializing the whole model would copy every weight once more
    (0.1 s on a model of 54 MB, against 0.03 s for hashing its bytes) and is impossible over 2 GiB. A
    tensor kept in its file is read a chunk at a time and hashes as it would loaded whole.
    """
    light, big = light_copy(model, 1024)
    # light_copy copies the main graph's nodes whole: a big Constant value is there with its data, or, kept
    # in its file, as its reference (a path). Either is hashed like a big initializer (fields, then values),
    # so the digest is the same wherever the file is and whether the model was loaded whole or not.
    for node, node_copy in zip(model.graph.node, light.graph.node):
        for attr, attr_copy in zip(node.attribute, node_copy.attribute):
            for t, copy in zip((attr.t, *attr.tensors), (attr_copy.t, *attr_copy.tensors)):
                if in_file(t) or _is_big(t, 1024):
                    for name in (*TENSOR_DATA_FIELDS, *_REFERENCE_FIELDS):
                        copy.ClearField(name)
                    big.append((t, copy))
    digest = hashlib.sha256(b"tensorwise:" + light.SerializeToString())
    for original, copy in big:
        digest.update(copy.SerializeToString())
        if in_file(original):
            for chunk in file_chunks(original):
                digest.update(chunk)
        elif original.HasField("raw_data"):
            digest.update(original.raw_data)
        else:  # values in a typed field (float_data, int64_data, ...)
            digest.update(original.SerializeToString())
    return digest.hexdigest()


class _HashingWriter:
    """A file wrapper that hashes what goes through it and knows its position."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._hash = hashlib.blake2b(digest_size=8)
        self.position = 0

    def write(self, data: bytes | memoryview) -> None:
        self._f.write(data)
        self._hash.update(data)
        self.position += len(data)

    def digest(self) -> str:
        return self._hash.hexdigest()


def _save_large(model: onnx.ModelProto, dest: Path) -> None:
    """Big tensors to ``<name>.<digest>.data``, the rest to ``dest``; ``model`` is only read.

    The data file is named after its content, so an older model at ``dest`` keeps pointing to
    its own data file: a run killed between the two renames leaves the old model with its old
    data (and an extra data file the next save removes), never a model paired with another
    run's weights. The model's rename is the one commit point; the renames and the removal of
    data files no model refers to any more happen under ``folder_lock``.

    Memory: the weights are copied out one tensor at a time, and the model written is a copy
    without their data (protobuf frees a message's memory only with the whole message, so
    clearing and restoring fields of ``model`` would hold the weights twice).
    """
    light, big = light_copy(model, _EXTERNAL_MIN_BYTES)
    placed: list[tuple[onnx.TensorProto, int, int]] = []
    digest = ""

    def write_data(f: BinaryIO) -> None:
        nonlocal digest
        writer = _HashingWriter(f)
        for source, target in big:
            # Align each tensor so runtimes can memory-map it.
            writer.write(b"\0" * (-writer.position % 64))
            start = writer.position
            for chunk in _data_chunks(source):
                writer.write(chunk)
            placed.append((target, start, writer.position - start))
        digest = writer.digest()

    data_tmp = write_temporary(dest.with_name(dest.name + ".data"), write_data, "the model's external data")
    location = f"{dest.name}.{digest}.data"
    for tensor, offset, length in placed:
        _point_to_file(tensor, location, offset, length)
    try:
        tmp = write_temporary(dest, lambda f: f.write(light.SerializeToString(deterministic=True)), "the model")
    except BaseException:
        data_tmp.unlink(missing_ok=True)
        raise
    with folder_lock(dest.parent):
        try:
            rename_into_place(data_tmp, dest.with_name(location), "the model's external data")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        rename_into_place(tmp, dest, "the model")
        _remove_other_data_files(dest, keep=location)


def _data_chunks(t: onnx.TensorProto) -> Iterator[bytes | memoryview]:
    """``t``'s raw bytes: from its file a chunk at a time for a reference, else at once."""
    if in_file(t):
        yield from file_chunks(t)
    elif t.HasField("raw_data"):
        yield t.raw_data
    else:
        arr = numpy_helper.to_array(t)
        # raw_data is little-endian by the ONNX spec, whatever the host.
        yield arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


#: The fields of a TensorProto that hold its values.
TENSOR_DATA_FIELDS = frozenset({"raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data",
                                "string_data"})


def light_copy(model: onnx.ModelProto, min_bytes: int, main_graph_only: bool = False
               ) -> tuple[onnx.ModelProto, list[tuple[onnx.TensorProto, onnx.TensorProto]]]:
    """A copy of ``model`` whose initializers of ``min_bytes`` or more, and whose tensors kept in their
    file (``rewriter.ir.external``), have no data; with ``main_graph_only``, subgraphs keep theirs.

    The copy is built field by field, so the main graph's big tensors are never copied; a subgraph is
    copied with its node and its big tensors emptied after (a reference costs nothing to copy). String
    tensors and tensors a file of the model's own holds stay as they are.

    Returns:
        The copy, and (original, its copy without data) for every tensor left without data.
    """
    light = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _copy_field(light, field, value)
    for field, value in model.graph.ListFields():
        if field.name != "initializer":
            _copy_field(light.graph, field, value)
    big = []
    for t in model.graph.initializer:
        copy = light.graph.initializer.add()
        if not _is_big(t, min_bytes):
            copy.CopyFrom(t)
            if in_file(t):  # too small to go out: in the model, as if it had been loaded whole
                _fill(t, copy)
            continue
        _copy_without_data(t, copy)
        big.append((t, copy))
    if main_graph_only:
        return light, big
    # Subgraphs: the copy has the same structure, so its tensors pair with the original's in order. The copy
    # is searched only when the original has any (each search reads every node's attributes).
    bodies = subgraphs(model.graph)
    for sub, sub_copy in zip(bodies, subgraphs(light.graph) if bodies else ()):
        for (t, initializer), (copy, _) in zip(_tensor_slots(sub), _tensor_slots(sub_copy)):
            # A tensor attribute (a Constant's value) goes out only if it was a reference already.
            if in_file(t) and not initializer or initializer and _is_big(t, min_bytes):
                for name in (*TENSOR_DATA_FIELDS, *_REFERENCE_FIELDS):
                    copy.ClearField(name)
                big.append((t, copy))
            elif in_file(t):
                _fill(t, copy)
    return light, big


def _copy_without_data(t: onnx.TensorProto, copy: onnx.TensorProto) -> None:
    """Copy ``t``'s fields but its values and their location into ``copy``. Field by field from the
    descriptor: ``ListFields`` would hand out ``raw_data`` too, as a copy of the bytes."""
    for field, repeated in _DESCRIPTION_FIELDS:
        name = field.name
        if repeated:
            value = getattr(t, name)
            if len(value):
                _copy_field(copy, field, value)
        elif t.HasField(name):
            _copy_field(copy, field, getattr(t, name))


def _is_repeated(field: Any) -> bool:
    # is_repeated is protobuf 5's name; older releases only have the label.
    return bool(field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED)


def _tensor_slots(graph: onnx.GraphProto) -> Iterator[tuple[onnx.TensorProto, bool]]:
    """(tensor, is an initializer) for every tensor of ``graph`` and its subgraphs, in ``tensors``' order."""
    for t in graph.initializer:
        yield t, True
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t, False
            elif attr.type == onnx.AttributeProto.TENSORS:
                for t in attr.tensors:
                    yield t, False
    for sub in subgraphs(graph):
        yield from _tensor_slots(sub)


#: The fields of a TensorProto that say where its values are stored.
_REFERENCE_FIELDS = ("data_location", "external_data")
#: The other fields of a TensorProto (name, dims, type and the like), each with whether it is repeated:
#: looked up once, as a large model's light copy copies them for thousands of tensors.
_DESCRIPTION_FIELDS = tuple((f, _is_repeated(f)) for f in onnx.TensorProto.DESCRIPTOR.fields
                            if f.name not in TENSOR_DATA_FIELDS and f.name not in _REFERENCE_FIELDS)


def _is_big(t: onnx.TensorProto, min_bytes: int) -> bool:
    if in_file(t):
        return _data_bytes(t) >= min_bytes
    return not (t.data_location == onnx.TensorProto.EXTERNAL or t.data_type == onnx.TensorProto.STRING
                or _data_bytes(t) < min_bytes)


def _itemsizes() -> dict[int, int]:
    sizes = {}
    for code in onnx.TensorProto.DataType.values():
        try:
            sizes[code] = np.dtype(helper.tensor_dtype_to_np_dtype(code)).itemsize
        except (KeyError, TypeError, ValueError):
            continue  # no numpy type (UNDEFINED): such a tensor is sized by its proto
    return sizes


# Bytes per value of each data type, looked up once: sizing is asked for every initializer of a model (55k on
# the 100k-node benchmark graph at each shape inference), and numpy's dtype from onnx's mapping costs a
# microsecond each time.
_ITEMSIZES = _itemsizes()


def _data_bytes(t: onnx.TensorProto) -> int:
    """The size of ``t``'s values, without copying them."""
    return _values_bytes(t, t.data_type, math.prod(t.dims))


def _values_bytes(t: onnx.TensorProto, data_type: int, size: int) -> int:
    """``_data_bytes`` of ``t``, for a caller that has read its ``data_type`` and its ``size`` (values) already."""
    itemsize = _ITEMSIZES.get(data_type)
    if itemsize is None:
        return t.ByteSize()
    return size * itemsize


def _copy_field(message: Any, field: Any, value: Any) -> None:
    if _is_repeated(field):
        getattr(message, field.name).extend(value)
    elif field.type == field.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _remove_other_data_files(dest: Path, keep: str | None) -> None:
    """Remove ``<name>.<digest>.data`` files beside ``dest`` other than ``keep``: no model refers to them.

    They are what an earlier save to ``dest`` wrote, or what a killed one left before its commit.
    """
    pattern = re.compile(re.escape(dest.name) + r"\.[0-9a-f]{16}\.data")
    for name in os.listdir(dest.parent):
        if name != keep and pattern.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest.parent / name)


def _point_to_file(t: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    t.ClearField("raw_data")
    for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        t.ClearField(field)
    t.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value


__all__ = ["KEEP_IN_FILE_BYTES", "LARGE_MODEL_BYTES", "TENSOR_DATA_FIELDS", "is_large", "light_copy", "load_model",
           "model_digest", "save_model", "save_split", "too_big_to_serialize"]
