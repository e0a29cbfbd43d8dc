"""The model artifact: everything serving needs, in plain arrays, loaded without pickle.

A model folder (SageMaker's ``/opt/ml/model``, later ``model.tar.gz``) holds:

``model.json``
    The manifest, written last: format name and version, mfrec version, the resolved training
    config, the metrics, array shapes, and the SHA-256 of every other file.
``arrays.npz``
    Uncompressed NumPy arrays (``allow_pickle=False``): ``user_embeddings`` (num_users, dim),
    ``item_embeddings`` (num_items, dim), ``user_biases`` (num_users,), ``item_biases``
    (num_items,), ``user_ids``/``item_ids`` (fixed-width unicode), ``item_popularity``
    (num_items,), ``seen_indptr``/``seen_indices`` (each user's training items as CSR),
    optional extras stored under ``extra.<name>`` (item metadata, co-occurrence, ...), and for
    ``model=sequence`` the sequence model's weights and each user's newest items (oldest
    first) under ``sequence.<name>`` (:mod:`mfrec.train.sequence_trainer`).

Score of user ``u`` for item ``i``: ``user_embeddings[u] @ item_embeddings[i] + user_biases[u]
+ item_biases[i]``. A sequence model's ``user_embeddings`` are its output after each user's
stored history, so the formula scores its known users too; a fresh history is encoded by the
model itself (:mod:`mfrec.serve.sequence`).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mfrec.train import digests
from mfrec.train.errors import ArtifactError

FORMAT_NAME = "mfrec-model"
FORMAT_VERSION = 1
MANIFEST = "model.json"
ARRAYS = "arrays.npz"
_EXTRA_PREFIX = "extra."
_SEQUENCE_PREFIX = "sequence."
# The extras the training job writes and the server reads (see mfrec.train.item_features).
TRENDING = "item_trending"
ATTRIBUTE_PREFIX = "item_attribute."


@dataclass
class ModelArtifact:
    """A trained model as NumPy arrays (see the module docstring for shapes)."""

    user_embeddings: np.ndarray
    item_embeddings: np.ndarray
    user_biases: np.ndarray
    item_biases: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_popularity: np.ndarray
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    sequence: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        nu, ni = len(self.user_ids), len(self.item_ids)
        checks = {
            "user_embeddings": (self.user_embeddings.shape[:1], (nu,)),
            "item_embeddings": (self.item_embeddings.shape[:1], (ni,)),
            "user_biases": (self.user_biases.shape, (nu,)),
            "item_biases": (self.item_biases.shape, (ni,)),
            "item_popularity": (self.item_popularity.shape, (ni,)),
            "seen_indptr": (self.seen_indptr.shape, (nu + 1,)),
        }
        for name, (got, want) in checks.items():
            if tuple(got) != tuple(want):
                raise ArtifactError(f"{name} has shape {tuple(got)}, expected {tuple(want)}")
        if self.user_embeddings.shape[1] != self.item_embeddings.shape[1]:
            raise ArtifactError("user and item embeddings have different dimensions")

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def embedding_dim(self) -> int:
        return int(self.item_embeddings.shape[1])

    def seen_items(self, user_idx: int) -> np.ndarray:
        """Training items of one user (item indices)."""
        return self.seen_indices[self.seen_indptr[user_idx] : self.seen_indptr[user_idx + 1]]

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "user_embeddings": np.ascontiguousarray(self.user_embeddings, dtype=np.float32),
            "item_embeddings": np.ascontiguousarray(self.item_embeddings, dtype=np.float32),
            "user_biases": np.asarray(self.user_biases, dtype=np.float32),
            "item_biases": np.asarray(self.item_biases, dtype=np.float32),
            "user_ids": np.asarray(self.user_ids, dtype=str),
            "item_ids": np.asarray(self.item_ids, dtype=str),
            "item_popularity": np.asarray(self.item_popularity, dtype=np.float32),
            "seen_indptr": np.asarray(self.seen_indptr, dtype=np.int64),
            "seen_indices": np.asarray(self.seen_indices, dtype=np.int64),
        }
        for name, value in self.extra.items():
            value = np.asarray(value)
            if value.dtype == object:
                raise ArtifactError(f"extra array {name!r} has dtype object; use str or numbers")
            arrays[_EXTRA_PREFIX + name] = value
        for name, value in self.sequence.items():
            arrays[_SEQUENCE_PREFIX + name] = np.asarray(value)
        return arrays


def _sha256(path: Path) -> str:
    return digests.sha256(path)


def save(artifact: ModelArtifact, model_dir: str | os.PathLike) -> Path:
    """Write ``artifact`` into ``model_dir`` so that it holds a complete model or none.

    Files are staged in a hidden folder inside ``model_dir`` (SageMaker mounts ``/opt/ml/model``
    as its own filesystem, so a rename from elsewhere would fail) and moved in afterwards, the
    manifest last; if anything fails, the files already moved are removed again. A crash leaves
    either no manifest (the folder is not a model) or a complete model, never a half-written one
    that loads.
    """
    from mfrec.train.version import __version__

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mfrec-staging-", dir=model_dir))
    moved: list[Path] = []
    try:
        arrays = artifact._arrays()
        np.savez(staging / ARRAYS, **arrays)
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "mfrec_version": __version__,
            "num_users": artifact.num_users,
            "num_items": artifact.num_items,
            "embedding_dim": artifact.embedding_dim,
            "config": artifact.config,
            "metrics": artifact.metrics,
            "extra": sorted(artifact.extra),
            "files": {ARRAYS: _sha256(staging / ARRAYS)},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (model_dir / MANIFEST).unlink(missing_ok=True)
        for name in (ARRAYS, MANIFEST):
            os.replace(staging / name, model_dir / name)
            moved.append(model_dir / name)
    except BaseException:
        for path in moved:
            path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_dir


def _check_manifest(manifest, path: Path) -> dict:
    """The manifest's shape: an object with the format, an integer version, a ``files`` map of
    SHA-256 digests that names the arrays (checksums are never optional) and a ``config``."""
    retrain = "copy the model folder again or retrain the model"
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} must hold a JSON object, not {type(manifest).__name__}")
    if manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path} is not an mfrec model manifest (no format {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactError(
            f"{path}: format_version must be the integer {FORMAT_VERSION}, got {version!r:.40} "
            f"({type(version).__name__}); the manifest was edited: {retrain}"
        )
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"model format version {version} is not supported by this mfrec (reads version "
            f"{FORMAT_VERSION}); retrain the model with this version or serve it with the "
            "mfrec version that trained it"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or ARRAYS not in files:
        raise ArtifactError(
            f"{path} has no checksums ('files' must map {ARRAYS} to its SHA-256); "
            f"without them a changed model would be served: {retrain}"
        )
    for name, digest in files.items():
        bad_name = not isinstance(name, str) or Path(name).name != name or name == MANIFEST
        if bad_name or not (isinstance(digest, str) and len(digest) == 64):
            raise ArtifactError(
                f"{path}: 'files' entry {name!r:.60} is not a file name and a "
                f"SHA-256 digest: {retrain}"
            )
    for key in ("config", "metrics"):
        if not isinstance(manifest.get(key, {} if key == "metrics" else None), dict):
            raise ArtifactError(f"{path}: {key!r} must be a JSON object: {retrain}")
    return manifest


def read_manifest(model_dir: str | os.PathLike) -> dict:
    """The manifest of a model folder, checked for format, version and shape."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ArtifactError(
            f"{model_dir} holds no mfrec model ({MANIFEST} is missing); train one with "
            "`mfrec train` or point --model-dir at the folder that holds model.json"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); retrain the model") from None
    return _check_manifest(manifest, path)


def _has_duplicates(ids: np.ndarray) -> bool:
    """Whether the 1-D fixed-width text array ``ids`` holds an id twice, exactly, without
    sorting the strings: a 64-bit FNV-1a hash per id, vectorised over the ids (one pass per
    character position), then only ids whose hashes collide are compared (1M ids: ~0.1 s
    against ~1 s for ``np.unique``)."""
    if len(ids) < 2:
        return False
    codes = np.ascontiguousarray(ids).view(np.uint32).reshape(len(ids), -1)
    hashes = np.full(len(ids), 0xCBF29CE484222325, dtype=np.uint64)
    for column in codes.T:
        hashes = (hashes ^ column) * np.uint64(0x100000001B3)
    ordered = np.sort(hashes)
    collide = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(collide):
        return False
    suspects = ids[np.isin(hashes, collide)]
    return len(np.unique(suspects)) != len(suspects)


def check_arrays(artifact: ModelArtifact, source: str | os.PathLike) -> None:
    """Refuse arrays that would be served wrongly: non-numeric or non-finite scores, ids that
    are not 1-D text, training items outside the catalogue, a CSR pointer that is not a
    running count. Raises :class:`ArtifactError` naming the array."""
    fix = f"in {source}; copy the model folder again or retrain"
    floats = ("user_embeddings", "item_embeddings", "user_biases", "item_biases")
    for name in (*floats, "item_popularity"):
        value = getattr(artifact, name)
        if value.dtype.kind not in "fiu":
            raise ArtifactError(f"{name} has dtype {value.dtype}, not numbers, {fix}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            raise ArtifactError(f"{name} holds {bad} NaN or infinite values {fix}")
    for name in ("user_embeddings", "item_embeddings"):
        if getattr(artifact, name).ndim != 2:
            raise ArtifactError(f"{name} must be 2-D (rows, embedding_dim) {fix}")
    for name in ("user_ids", "item_ids"):
        value = getattr(artifact, name)
        if value.ndim != 1 or value.dtype.kind != "U":
            raise ArtifactError(f"{name} must be a 1-D array of text, got {value.dtype} {fix}")
        if _has_duplicates(value):
            raise ArtifactError(f"{name} holds duplicate ids {fix}")
    indptr, indices = artifact.seen_indptr, artifact.seen_indices
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu" or indices.ndim != 1:
        raise ArtifactError(f"seen_indptr and seen_indices must be 1-D integer arrays {fix}")
    if indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        raise ArtifactError(
            f"seen_indptr must rise from 0 to len(seen_indices)={len(indices)} {fix}"
        )
    if len(indices) and (indices.min() < 0 or indices.max() >= artifact.num_items):
        raise ArtifactError(
            f"seen_indices holds item indices outside 0..{artifact.num_items - 1} {fix}"
        )


_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _mapped_arrays(path: Path, before_reading=lambda: None) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path``, memory-mapped copy-on-write where stored
    uncompressed (as :func:`save` writes them), else read with ``np.load``: nothing is copied at
    load, and the server's workers, forked after loading, share the pages (a 1M-user model's
    700 MB are not read twice). ``before_reading()`` is called before a member is read."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            raw.seek(info.header_offset)
            local = raw.read(30)  # the local file header, then its name and extra field
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"member {info.filename} has no local header")
            raw.seek(info.header_offset + 30 + sum(struct.unpack("<HH", local[26:30])))
            read_header = _NPY_HEADERS.get(np.lib.format.read_magic(raw))
            if info.compress_type != zipfile.ZIP_STORED or read_header is None:
                before_reading()
                with np.load(path, allow_pickle=False) as data:
                    arrays[name] = data[name]
                continue
            shape, fortran, dtype = read_header(raw)
            if dtype.hasobject:
                raise ValueError(f"{name} holds Python objects, which are never loaded")
            if not np.prod(shape, dtype=np.int64):
                arrays[name] = np.empty(shape, dtype)
                continue
            order = "F" if fortran else "C"
            mapped = np.memmap(raw, dtype, "c", raw.tell(), shape, order)
            arrays[name] = mapped.view(np.ndarray)
    return arrays


def load(model_dir: str | os.PathLike, verify: bool = True) -> ModelArtifact:
    """Rebuild a :class:`ModelArtifact` from a model folder alone, checked (:func:`check_arrays`).

    Raises
    ------
    ArtifactError
        The folder has no manifest, a manifest of another format version or shape (no
        checksums, say), a missing file, a file whose SHA-256 differs from the manifest's
        (tampered or truncated), or arrays with wrong shapes, NaN or out-of-range indices.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    for name in manifest["files"]:
        path = model_dir / name
        if not path.is_file():
            raise ArtifactError(f"model file {path} is missing; copy the whole model folder")
    if not verify:
        return _read(model_dir, manifest, lambda: None)
    # The files are hashed on threads while the arrays are mapped and checked (each takes about
    # a second for a 1M-user model). A digest that differs is the error reported, whatever the
    # checks found (a changed file explains them), and it is awaited before anything is read
    # into memory rather than mapped (a compressed member: its header could ask for any size).
    hash_in_background(model_dir, manifest)
    checked = []

    def check_digests() -> None:
        if checked:
            return
        checked.append(True)
        for name, digest in manifest["files"].items():
            path = model_dir / name
            if _sha256(path) != digest:
                raise ArtifactError(
                    f"model file {path} does not match its checksum in {MANIFEST} (changed or "
                    "truncated); copy the model folder again or retrain"
                )

    try:
        artifact = _read(model_dir, manifest, check_digests)
    except Exception:  # re-raised: a changed file, if that is the cause, is named instead
        check_digests()
        raise
    check_digests()
    return artifact


def hash_in_background(model_dir: str | os.PathLike, manifest: dict | None = None) -> None:
    """Start hashing the model's files on threads; :func:`load` then compares those digests
    (computed again if a file changed meanwhile). :func:`load` calls it first, so that the
    hashing overlaps its array checks (and ``mfrec serve`` runs the whole load on a thread
    while it imports torch). A folder without a readable manifest is left to :func:`load` to
    report."""
    try:
        manifest = manifest or read_manifest(model_dir)
    except ArtifactError:
        return
    digests.start([Path(model_dir) / name for name in manifest["files"]])


def _read(model_dir: Path, manifest: dict, check_digests) -> ModelArtifact:
    """The artifact in ``model_dir``, its arrays memory-mapped and checked; ``check_digests()``
    is called before any array is read into memory instead."""
    try:
        arrays = _mapped_arrays(model_dir / ARRAYS, check_digests)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"cannot read {model_dir / ARRAYS}: {exc}") from None
    extra = {
        name[len(_EXTRA_PREFIX) :]: value
        for name, value in arrays.items()
        if name.startswith(_EXTRA_PREFIX)
    }
    sequence = {
        name[len(_SEQUENCE_PREFIX) :]: value
        for name, value in arrays.items()
        if name.startswith(_SEQUENCE_PREFIX)
    }
    core = {
        name: value
        for name, value in arrays.items()
        if not name.startswith((_EXTRA_PREFIX, _SEQUENCE_PREFIX))
    }
    for name in ("user_embeddings", "item_embeddings"):
        if name in core and core[name].ndim != 2:
            raise ArtifactError(f"{name} must be 2-D (rows, embedding_dim) in {ARRAYS}; retrain")
    try:
        artifact = ModelArtifact(
            **core,
            config=manifest["config"],
            metrics=manifest.get("metrics", {}),
            extra=extra,
            sequence=sequence,
        )
    except (TypeError, IndexError) as exc:
        raise ArtifactError(
            f"{model_dir / ARRAYS} does not hold the expected arrays: {exc}"
        ) from None
    check_arrays(artifact, model_dir / ARRAYS)
    for name, value in sequence.items():
        if value.dtype.kind not in "fiu" or (
            value.dtype.kind == "f" and not np.isfinite(value).all()
        ):
            raise ArtifactError(
                f"sequence array {name!r} holds non-numeric, NaN or infinite values in "
                f"{model_dir / ARRAYS}; copy the model folder again or retrain"
            )
    return artifact
