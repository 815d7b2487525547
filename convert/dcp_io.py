"""Stream tensors in and out of megatron-core distributed checkpoints, one slice at a time.

``codetron train`` saves with ``megatron.core.dist_checkpointing`` (backend ``torch_dist``), which
stores every parameter under a *global* key with its *global* shape, whatever the TP/PP/VPP layout:
per-layer parameters are stacked over layers (``decoder.layers.mlp.linear_fc1.weight`` has shape
``(num_layers, ffn, hidden)``) and each rank wrote its own chunks. So a converter needs no process
group and no model: it asks torch.distributed.checkpoint (DCP) for exactly the region it needs --
one layer of one parameter -- and DCP reads only the stored chunks overlapping it.

Reading uses a small ``LoadPlanner`` that requests regions instead of whole state-dict entries;
writing uses a ``SavePlanner`` whose write items are produced lazily, so a converted checkpoint is
written one tensor at a time. Peak memory is a few tensors, never the model.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    ReadItem,
    SavePlan,
    WriteItem,
    WriteItemType,
)
from torch.distributed.checkpoint.planner import TensorWriteData
from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

from codetron.errors import CodetronError

# megatron's dist_checkpointing marks a torch_dist checkpoint with this file.
MEGATRON_METADATA = {"sharded_backend": "torch_dist", "sharded_backend_version": 1,
                     "common_backend": "torch", "common_backend_version": 1}


@contextlib.contextmanager
def _quiet():
    """DCP warns on every call that no process group exists; that is the point here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        yield


class _CachedReader(FileSystemReader):
    """A FileSystemReader that unpickles ``.metadata`` once, not once per slice read."""

    def __init__(self, path: str | Path):
        super().__init__(str(path))
        self._md: Metadata | None = None

    def read_metadata(self, *args, **kwargs) -> Metadata:
        if self._md is None:
            self._md = super().read_metadata(*args, **kwargs)
        return self._md


class _RegionLoadPlanner(LoadPlanner):
    """Loads requested regions ``{fqn: (offsets, destination tensor)}`` and byte objects."""

    def __init__(self, regions: dict[str, tuple[Sequence[int], torch.Tensor]], objects: Sequence[str] = ()):
        self.regions = regions
        self.objects = list(objects)
        self.loaded_objects: dict[str, bytes] = {}

    def set_up_planner(self, state_dict, metadata=None, is_coordinator=False) -> None:
        self.metadata = metadata

    def create_local_plan(self) -> LoadPlan:
        items: list[ReadItem] = []
        for fqn, (offsets, dest) in self.regions.items():
            chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=dest.size())
            items += create_read_items_for_chunk_list(fqn, self.metadata.state_dict_metadata[fqn], [chunk])
        for fqn in self.objects:
            items += [ReadItem(type=LoadItemType.BYTE_IO, dest_index=MetadataIndex(fqn), dest_offsets=torch.Size([0]),
                               storage_index=MetadataIndex(fqn), storage_offsets=torch.Size([0]), lengths=torch.Size([0]))]
        return LoadPlan(items)

    def create_global_plan(self, global_plan):
        return global_plan

    def finish_plan(self, central_plan):
        return central_plan

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        self.loaded_objects[read_item.dest_index.fqn] = value.read()

    def resolve_tensor(self, read_item: ReadItem) -> torch.Tensor:
        dest = self.regions[read_item.dest_index.fqn][1]
        for dim, (start, length) in enumerate(zip(read_item.dest_offsets, read_item.lengths)):
            dest = dest.narrow(dim, start, length)
        return dest

    def commit_tensor(self, read_item: ReadItem, tensor: torch.Tensor) -> None:
        pass  # resolve_tensor handed out a view of the destination: the data is already there


class CheckpointReader:
    """Random access to the tensors of one ``iter_*`` directory."""

    def __init__(self, ckpt_dir: str | Path):
        self.path = Path(ckpt_dir)
        if not (self.path / ".metadata").is_file():
            raise CodetronError(f"{self.path}: no .metadata file; not a torch_dist checkpoint written by codetron train")
        self._reader = _CachedReader(self.path)
        try:
            self.metadata = self._reader.read_metadata()
        except Exception as exc:  # a truncated or foreign file; say which
            raise CodetronError(f"{self.path / '.metadata'}: unreadable checkpoint metadata ({exc})") from None
        self._check_files()

    def _check_files(self) -> None:
        wanted = {info.relative_path for info in self.metadata.storage_data.values()}
        missing = sorted(p for p in wanted if not (self.path / p).is_file())
        if missing:
            raise CodetronError(f"{self.path}: checkpoint shard file(s) missing: {', '.join(missing[:4])}"
                                f"{' ...' if len(missing) > 4 else ''}")
        # a save killed mid-write or a partial copy leaves short files; DCP would only fail deep in
        # torch.load with a bare EOFError, after part of the output was written
        needed: dict[str, int] = {}
        for info in self.metadata.storage_data.values():
            needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
        for name, size in sorted(needed.items()):
            have = (self.path / name).stat().st_size
            if have < size:
                raise CodetronError(f"{self.path / name}: truncated ({have} bytes, the checkpoint metadata needs "
                                    f"{size}); the checkpoint is incomplete, convert an earlier iter_* directory")

    def keys(self) -> list[str]:
        return list(self.metadata.state_dict_metadata)

    def has(self, key: str) -> bool:
        return isinstance(self.metadata.state_dict_metadata.get(key), TensorStorageMetadata)

    def tensor_meta(self, key: str) -> TensorStorageMetadata:
        md = self.metadata.state_dict_metadata.get(key)
        if not isinstance(md, TensorStorageMetadata):
            raise CodetronError(f"{self.path}: checkpoint has no tensor {key!r}")
        return md

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.tensor_meta(key).size)

    def dtype(self, key: str) -> torch.dtype:
        return self.tensor_meta(key).properties.dtype

    def read(self, key: str, layer: int | None = None) -> torch.Tensor:
        """The whole tensor, or with ``layer`` one slice along the stacked layer axis (squeezed)."""
        md = self.tensor_meta(key)
        size = list(md.size)
        offsets = [0] * len(size)
        if layer is not None:
            offsets[0], size[0] = layer, 1
        dest = torch.empty(size, dtype=md.properties.dtype)
        self._load({key: (offsets, dest)})
        return dest[0] if layer is not None else dest

    def iter_row_chunks(self, key: str) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first_row, rows)`` pieces of a 2-D tensor in row order, one stored chunk at a time.

        Used for the embeddings, the largest tensors: each stored chunk is deserialised straight from
        its byte range, so memory holds one chunk instead of the chunk plus a destination copy.
        Chunks that do not tile whole rows (never written by megatron) fall back to one full read.
        """
        md = self.tensor_meta(key)
        rows, cols = md.size
        chunks = sorted(md.chunks, key=lambda c: c.offsets[0])
        starts = [c.offsets[0] for c in chunks]
        tiles = all(c.offsets[1] == 0 and c.sizes[1] == cols for c in chunks) and \
            starts == [sum(c.sizes[0] for c in chunks[:i]) for i in range(len(chunks))] and \
            sum(c.sizes[0] for c in chunks) == rows
        if not tiles:
            yield 0, self.read(key)
            return
        for c in chunks:
            t = self._load_stored_chunk(key, c)
            yield c.offsets[0], t

    def _load_stored_chunk(self, key: str, chunk: ChunkStorageMetadata) -> torch.Tensor:
        info = self.metadata.storage_data.get(MetadataIndex(key, chunk.offsets))
        if info is None or getattr(info, "transform_descriptors", None):
            dest = torch.empty(tuple(chunk.sizes), dtype=self.dtype(key))
            self._load({key: (tuple(chunk.offsets), dest)})
            return dest
        with open(self.path / info.relative_path, "rb") as fh, self._reading([key]):
            t = torch.load(_FileSlice(fh, info.offset, info.length), map_location="cpu", weights_only=True)
        if tuple(t.shape) != tuple(chunk.sizes):
            raise CodetronError(f"{self.path / info.relative_path}: chunk of {key} has shape {tuple(t.shape)}, "
                                f"metadata says {tuple(chunk.sizes)}")
        return t

    def read_object(self, key: str) -> bytes:
        planner = _RegionLoadPlanner({}, [key])
        with _quiet(), self._reading([key]):
            dcp_load({}, storage_reader=self._reader, planner=planner, no_dist=True)
        return planner.loaded_objects[key]

    def _load(self, regions) -> None:
        with _quiet(), self._reading(list(regions)):
            dcp_load({}, storage_reader=self._reader, planner=_RegionLoadPlanner(regions), no_dist=True)

    @contextlib.contextmanager
    def _reading(self, keys: list[str]):
        """Corrupt bytes that pass the size check still end in one line naming the files read."""
        try:
            yield
        except CodetronError:
            raise
        except (Exception, CheckpointException) as exc:
            if isinstance(exc, CheckpointException) and exc.failures:
                exc = next(iter(exc.failures.values()))[0]  # DCP wraps the real error per rank
            files = sorted({str(self.path / info.relative_path) for index, info in self.metadata.storage_data.items()
                            if index.fqn in keys})
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise CodetronError(f"{', '.join(files) or self.path}: cannot read {', '.join(keys)} "
                                f"({type(exc).__name__}{': ' + detail if detail else ''}); "
                                f"corrupt or unreadable checkpoint") from None


class _FileSlice(io.RawIOBase):
    """A read-only, seekable view of bytes ``[offset, offset + length)`` of an open file, so that
    ``torch.load`` reads one record of a ``.distcp`` file lazily instead of from a bytes copy."""

    def __init__(self, fh, offset: int, length: int):
        self._fh, self._start, self._len, self._pos = fh, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._len}[whence]
        self._pos = max(0, min(self._len, base + pos))
        return self._pos

    def readinto(self, buf) -> int:
        n = min(len(buf), self._len - self._pos)
        if n <= 0:
            return 0
        self._fh.seek(self._start + self._pos)
        got = self._fh.readinto(memoryview(buf)[:n])
        self._pos += got
        return got


@dataclass
class TensorToWrite:
    """One global tensor of the checkpoint to write, stored as the given chunks."""

    key: str
    """Global ShardedTensor key, e.g. ``decoder.layers.mlp.linear_fc1.weight``."""
    shape: tuple[int, ...]
    """Global shape (layer-stacked tensors have the layer axis first)."""
    dtype: torch.dtype
    """Stored dtype."""
    chunks: list[tuple[tuple[int, ...], tuple[int, ...]]]
    """(offsets, sizes) of each stored chunk; together they tile the tensor exactly once."""
    produce: Callable[[tuple[int, ...], tuple[int, ...]], torch.Tensor] = field(repr=False)
    """Returns the data of one chunk; called once per chunk, at write time."""


class _LazySavePlanner(DefaultSavePlanner):
    """A save planner whose items come from ``TensorToWrite`` specs, produced one at a time."""

    def __init__(self, tensors: list[TensorToWrite], objects: dict[str, bytes], on_write: Callable[[], None] | None):
        super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
        self._tensors = {t.key: t for t in tensors}
        self._objects = objects
        self._on_write = on_write

    def create_local_plan(self) -> SavePlan:
        items = []
        for t in self._tensors.values():
            props = TensorProperties(dtype=t.dtype)
            for offsets, sizes in t.chunks:
                items.append(WriteItem(
                    index=MetadataIndex(t.key, torch.Size(offsets)), type=WriteItemType.SHARD,
                    tensor_data=TensorWriteData(chunk=ChunkStorageMetadata(torch.Size(offsets), torch.Size(sizes)),
                                                properties=props, size=torch.Size(t.shape))))
        for key in self._objects:
            items.append(WriteItem(index=MetadataIndex(key), type=WriteItemType.BYTE_IO))
        self.plan = SavePlan(items)
        return self.plan

    def resolve_data(self, write_item: WriteItem):
        if write_item.type == WriteItemType.BYTE_IO:
            return io.BytesIO(self._objects[write_item.index.fqn])
        t = self._tensors[write_item.index.fqn]
        chunk = write_item.tensor_data.chunk
        data = t.produce(tuple(chunk.offsets), tuple(chunk.sizes))
        if tuple(data.shape) != tuple(chunk.sizes) or data.dtype != t.dtype:
            raise AssertionError(f"{t.key}: produced {tuple(data.shape)} {data.dtype}, planned {tuple(chunk.sizes)} {t.dtype}")
        if self._on_write:
            self._on_write()
        return data.contiguous()


def write_checkpoint(path: str | Path, tensors: list[TensorToWrite], objects: dict[str, bytes], common: dict,
                     on_write: Callable[[], None] | None = None) -> None:
    """Write a megatron-core torch_dist checkpoint directory (which must exist and be empty).

    ``objects`` are ShardedObjects, already serialised the way megatron does (``torch.save([data])``)
    and keyed by their unique key; ``common`` becomes ``common.pt`` (iteration, scheduler, ...).
    One writer thread, so chunks are produced and written strictly one after another.
    """
    import json

    path = Path(path)
    writer = FileSystemWriter(str(path), single_file_per_rank=True, thread_count=1, sync_files=False)
    with _quiet():
        dcp_save({}, storage_writer=writer, planner=_LazySavePlanner(tensors, objects, on_write), no_dist=True)
    torch.save(common, path / "common.pt")
    (path / "metadata.json").write_text(json.dumps(MEGATRON_METADATA))


def object_bytes(data) -> bytes:
    """Serialise a ShardedObject's payload exactly as megatron's torch_dist strategy does."""
    buf = io.BytesIO()
    torch.save([data], buf)
    return buf.getvalue()


__all__ = ["CheckpointReader", "TensorToWrite", "write_checkpoint", "object_bytes", "BytesStorageMetadata"]
