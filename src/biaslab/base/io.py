"""Atomic writes and verified reads.

Every artifact is written to a temporary sibling, then renamed: a crash (or SIGKILL) never
leaves a half-written file under its final name. A full disk raises an ``OSError`` (errno
``ENOSPC``) that says so and names the file.

Every artifact also records a content hash (sha256) when it is written, verified when it is
read: a truncated, damaged or unverifiable file raises ``CorruptArtifactError``, naming the
file and what to do, instead of loading changed content.

* ``.npz`` (``write_npz`` / ``load_npz``): the hash of the arrays is the member ``__sha256__``;
* Parquet (``write_parquet`` / ``read_parquet``): the hash of the table, read back as Arrow,
  is the schema metadata key ``biaslab.sha256``;
* torch files (``save_torch`` / ``load_torch``): the hash of the saved dict is its key
  ``__sha256__``;
* folders (``write_checksums`` / ``verify_checksums``): ``checksums.json`` maps every file's
  relative path to its sha256.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The key of the content hash in an .npz (a member) and in a saved torch dict.
DIGEST_KEY = "__sha256__"
#: The schema metadata key of a Parquet file's content hash.
PARQUET_DIGEST_KEY = b"biaslab.sha256"
#: The file in a folder artifact that lists the sha256 of every other file.
CHECKSUMS = "checksums.json"

NO_HASH = "it has no content hash: written by an older version of biaslab, or damaged"
CHANGED = "its content changed after it was written (the content hash differs)"
CHANGED_FILE = "its content changed after it was written (the sha256 recorded in {} differs)"


class CorruptArtifactError(ValueError):
    """A truncated, damaged or unverifiable artifact. The message names the file, the problem
    and the fix: remake the file (or ``delete``, the rule output it belongs to: a model
    folder) with ``snakemake --force <it>``, then run the workflow again, which reruns what
    depends on it (its outputs are now older than their input). Deleting the file alone is not
    enough when files made from it exist: Snakemake then has "nothing to be done"."""

    def __init__(
        self,
        path: str | os.PathLike,
        problem: str,
        *,
        rule: str | None = None,
        delete: str | os.PathLike | None = None,
    ):
        self.path = Path(path)
        self.problem = problem
        self.rule = rule
        target = Path(delete) if delete is not None else self.path
        by = f" (rule {rule})" if rule else ""
        super().__init__(
            f"{path}: {problem}; remake it{by} with `snakemake --force {target}` (and your "
            "usual options), then run `snakemake` again to update what depends on it"
        )


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On any exception the temporary file (or directory) is removed and ``path`` is untouched; a
    full disk (errno ``ENOSPC``, however the writing library wraps it) is re-raised as an
    ``OSError`` saying "No space left on device" and naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
        )
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp create owner-only entries; give the result the usual umask modes
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if directory else 0o666) & ~umask)
        if directory:
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if _is_disk_full(exc):
            raise OSError(
                errno.ENOSPC,
                f"No space left on device while writing {path}; free space and rerun",
                str(path),
            ) from exc
        raise


def _is_disk_full(exc: BaseException) -> bool:
    """``ENOSPC`` anywhere in the exception's chain, as an errno or in the text (safetensors
    and torch's zip writer report it as text)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        text = str(exc)
        if "No space left on device" in text or "os error 28" in text:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _write_all(fd: int, data) -> None:
    """``os.write`` until every byte is written (a short write is retried, so a full disk
    raises ``OSError(ENOSPC)`` instead of being reported as a short count)."""
    view = memoryview(data).cast("B")
    while view.nbytes:
        view = view[os.write(fd, view) :]


class _Sink(io.RawIOBase):
    """A seekable write-only file whose every write is complete or raises: the libraries
    writing through it (torch's zip writer, zipfile) see the real ``OSError``."""

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b) -> int:
        _write_all(self._fd, b)
        return memoryview(b).nbytes

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def write_bytes(path: str | os.PathLike, data) -> None:
    """Write ``data`` (bytes or any buffer) to ``path`` atomically."""
    with atomic_path(path) as tmp, _Sink(tmp) as fh:
        fh.write(data)


def save_figure(fig, paths: list[str | os.PathLike] | tuple[str | os.PathLike, ...]) -> None:
    """Save a matplotlib figure to each path (format from the suffix), atomically."""
    for p in paths:
        p = Path(p)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip("."), bbox_inches="tight", dpi=150)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


# --------------------------------------------------------------------------- .npz


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.asarray(arrays[key])
        if a.dtype.hasobject:
            raise TypeError(f"{key}: object arrays cannot be stored in an .npz")
        h.update(json.dumps([key, a.dtype.str, list(a.shape)]).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to a compressed .npz atomically, with their content hash."""
    if DIGEST_KEY in arrays:
        raise ValueError(f"{DIGEST_KEY} is reserved for the content hash")
    digest = np.array(_arrays_digest(arrays))
    with atomic_path(path) as tmp, io.BufferedWriter(_Sink(tmp)) as fh:
        np.savez_compressed(fh, **arrays, **{DIGEST_KEY: digest})


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an .npz written by ``write_npz``, verified against its content hash."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such .npz file", str(path))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}  # reading checks each member's CRC-32
    except Exception as e:
        raise CorruptArtifactError(path, f"not a readable .npz ({_first_line(e)})") from e
    stored = arrays.pop(DIGEST_KEY, None)
    if stored is None:
        raise CorruptArtifactError(path, NO_HASH)
    if stored.shape != () or str(stored) != _arrays_digest(arrays):
        raise CorruptArtifactError(path, CHANGED)
    return arrays


# --------------------------------------------------------------------------- Parquet


def _table_digest(table) -> str:
    """sha256 of an Arrow table (schema with its metadata, less the hash itself, and data)
    in the Arrow IPC stream format."""
    import pyarrow as pa

    meta = dict(table.schema.metadata or {})
    meta.pop(PARQUET_DIGEST_KEY, None)
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(memoryview(sink.getvalue())).hexdigest()


def _parquet_table(data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data))


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a DataFrame to Parquet atomically (no index), with its content hash: the hash of
    the table as it reads back, stored in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    table = _parquet_table(buf.getvalue())
    digest = _table_digest(table)
    meta = {**(table.schema.metadata or {}), PARQUET_DIGEST_KEY: digest.encode()}
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink, compression="snappy")
    data = sink.getvalue()
    if _table_digest(_parquet_table(data)) != digest:  # what read_parquet will check
        raise RuntimeError(f"{path}: the Parquet content hash does not reproduce")
    write_bytes(path, data)


def read_parquet(path: str | os.PathLike) -> pd.DataFrame:
    """A Parquet file written by ``write_parquet``, verified against its content hash, as
    ``pandas.read_parquet`` reads it."""
    path = Path(path)
    data = path.read_bytes()
    try:
        table = _parquet_table(data)
        stored = (table.schema.metadata or {}).get(PARQUET_DIGEST_KEY)
        same = stored is not None and stored.decode("ascii", "replace") == _table_digest(table)
    except Exception as e:
        raise CorruptArtifactError(path, f"not a readable Parquet file ({_first_line(e)})") from e
    if stored is None:
        raise CorruptArtifactError(path, NO_HASH)
    if not same:
        raise CorruptArtifactError(path, CHANGED)
    return pd.read_parquet(io.BytesIO(data))


# --------------------------------------------------------------------------- torch files


def state_digest(obj: Any) -> str:
    """sha256 of a nested structure of dicts, lists, tuples, tensors, arrays and scalars (as
    saved by ``torch.save``; tensors by dtype, shape and values, wherever they live)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj: Any) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.dtype.str}{obj.shape}:".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__[0]}{len(obj)}:".encode())
        for v in obj:
            _feed(h, v)
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, (torch.dtype, torch.device)):
        h.update(f"{type(obj).__name__}:{obj};".encode())
    else:
        raise TypeError(f"cannot hash a {type(obj).__name__} in a saved state")


def save_torch(
    obj: dict[str, Any], path: str | os.PathLike, *, keep_previous: str | os.PathLike | None = None
) -> None:
    """``torch.save`` a dict atomically, with its content hash (key ``__sha256__``).

    With ``keep_previous``, an existing ``path`` is renamed to it once the new file is fully
    written, just before the new one takes its name."""
    import torch

    if not isinstance(obj, dict):
        raise TypeError(f"save_torch saves a dict, not a {type(obj).__name__}")
    if DIGEST_KEY in obj:
        raise ValueError(f"{DIGEST_KEY} is reserved for the content hash")
    sealed = {**obj, DIGEST_KEY: state_digest(obj)}
    path = Path(path)
    with atomic_path(path) as tmp:
        with _Sink(tmp) as fh:
            torch.save(sealed, fh)
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)


def load_torch(
    path: str | os.PathLike,
    *,
    map_location: Any = None,
    weights_only: bool = True,
    rule: str | None = None,
) -> dict[str, Any]:
    """A dict written by ``save_torch``, verified against its content hash (and without it).
    ``CorruptArtifactError`` (naming ``path`` and ``rule``) when it is unreadable or changed."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
    try:
        state = torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as e:
        raise CorruptArtifactError(
            path, f"not a readable torch file ({_first_line(e)})", rule=rule
        ) from e
    if not isinstance(state, dict) or DIGEST_KEY not in state:
        raise CorruptArtifactError(path, NO_HASH, rule=rule)
    stored = state.pop(DIGEST_KEY)
    try:
        same = stored == state_digest(state)
    except TypeError:
        same = False
    if not same:
        raise CorruptArtifactError(path, CHANGED, rule=rule)
    return state


# --------------------------------------------------------------------------- folders


def _listing_digest(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def write_checksums(directory: str | os.PathLike) -> None:
    """Write ``directory/checksums.json`` (atomically; call it last): the sha256 of every
    other file under ``directory`` by relative path, and the hash of that listing."""
    directory = Path(directory)
    files = {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != CHECKSUMS
    }
    listing = {"algorithm": "sha256", "files": files, "sha256": _listing_digest(files)}
    write_bytes(directory / CHECKSUMS, (json.dumps(listing, indent=1) + "\n").encode())


def verify_checksums(directory: str | os.PathLike, *, rule: str | None = None) -> None:
    """Check every file listed in ``directory/checksums.json`` against its sha256 (files not
    listed, such as Snakemake's timestamp, are ignored). ``CorruptArtifactError`` naming the
    first missing or changed file, the folder to delete and ``rule``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(directory))
    listing = directory / CHECKSUMS

    def corrupt(path: Path, problem: str) -> CorruptArtifactError:
        return CorruptArtifactError(path, problem, rule=rule, delete=directory)

    if not listing.is_file():
        raise corrupt(
            listing, "missing: the folder was written by an older version of biaslab, or damaged"
        )
    try:
        data = json.loads(listing.read_text())
        files = data["files"]
        valid = (
            data["algorithm"] == "sha256"
            and isinstance(files, dict)
            and bool(files)
            and data["sha256"] == _listing_digest(files)
        )
    except (ValueError, KeyError, TypeError) as e:  # UnicodeDecodeError is a ValueError
        raise corrupt(listing, f"unreadable ({_first_line(e)})") from e
    if not valid:
        raise corrupt(listing, "damaged (its own hash differs)")
    for rel, want in files.items():
        p = directory / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not p.is_file():
            raise corrupt(p, f"missing (listed in {listing})")
        if sha256_file(p) != want:
            raise corrupt(p, CHANGED_FILE.format(listing))
