"""Finding the files of a dataset and reading each one into an Arrow table, without row loops.

A path is a single file or a folder read recursively (a SageMaker channel holds the S3 prefix's
key tree). Hidden files (``.name``), Spark/Hadoop markers (``_SUCCESS``, ``_metadata``), empty
files and obviously non-data files (``.md``, ``.crc``, ``.zip``, ...) are skipped and listed.

Each file is sniffed from its first 64 KiB: Parquet (``PAR1`` magic), JSON lines (first
character ``{``) or delimited text; gzip is recognised by its magic bytes whatever the name.
For text, the delimiter is the first of ``::``, tab, comma, semicolon, pipe and space that
splits the sampled lines into the same number (>= 2) of fields; the encoding is UTF-8 (a BOM is
fine), UTF-16 when it starts with a UTF-16 BOM, otherwise latin-1, which is reported. UTF-16
without a BOM (every other byte 0) and other text with NUL bytes are refused with a message
saying so, rather than read as one garbled column.

Header rule (``header="auto"``): the first line is a header when one of its fields is a known
column name (see :mod:`.columns`), or when a column is numeric below a non-numeric first
value, or when every first-line field is a word (letters, ``_``, spaces) that never appears again
in its column. ``header="yes"``/``"no"`` overrides the rule.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest.columns import is_known_name, positional_names

logger = logging.getLogger(__name__)

SAMPLE_BYTES = 64 * 1024
SAMPLE_LINES = 200
DELIMITERS = ("::", "\t", ",", ";", "|", " ")
DELIMITER_NAMES = {
    "::": "'::'",
    "\t": "tab",
    ",": "comma",
    ";": "semicolon",
    "|": "pipe",
    " ": "space",
}
NOT_DATA_SUFFIXES = {
    ".md",
    ".rst",
    ".crc",
    ".pdf",
    ".html",
    ".htm",
    ".zip",
    ".tar",
    ".tgz",
    ".7z",
    ".png",
    ".jpg",
    ".jpeg",
    ".py",
    ".ipynb",
    ".xlsx",
    ".xls",
    ".sh",
    ".yaml",
    ".yml",
    ".manifest",
}
_WORD = re.compile(r"^[A-Za-z_][A-Za-z_ ]*$")


@dataclass(frozen=True)
class SourceFile:
    """What sniffing found out about one input file."""

    path: Path
    kind: str  # "csv", "parquet" or "jsonl"
    compression: str | None = None  # "gzip" or None
    delimiter: str | None = None
    has_header: bool = True
    column_names: tuple[str, ...] = ()
    encoding: str = "utf-8"
    sample_rows: tuple[tuple[str, ...], ...] = field(default=(), repr=False)

    def describe(self) -> str:
        parts = [self.kind if self.kind != "csv" else "delimited text"]
        if self.compression:
            parts.append(self.compression)
        if self.kind == "csv":
            parts.append(f"{DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))}-separated")
            parts.append("header" if self.has_header else "no header")
            parts.append(self.encoding)
        return ", ".join(parts)


def list_input_files(path: str | Path) -> tuple[list[Path], list[str]]:
    """Data files under ``path`` (sorted) and the skipped ones with the reason.

    Raises
    ------
    DataValidationError
        When the path does not exist or no data file is left, listing the likely causes.
    """
    path = Path(path)
    if path.is_file():
        return [path], []
    if not path.exists():
        raise DataValidationError(
            f"{path} does not exist. Check the path (locally) or the channel name and S3 prefix "
            f"of the training job (SageMaker copies channel 'training' to input/data/training)."
        )
    files, skipped = [], []
    found = (p for p in path.rglob("*") if p.is_file() or p.is_fifo())
    for candidate in sorted(found, key=lambda p: p.relative_to(path).parts):
        relative = candidate.relative_to(path)
        reason = _skip_reason(candidate, relative)
        if reason:
            skipped.append(f"{relative} ({reason})")
        else:
            files.append(candidate)
    if not files:
        found = "; ".join(skipped[:10]) if skipped else "nothing at all"
        raise DataValidationError(
            f"no data file in {path} (found: {found}). Likely causes: a wrong channel name or S3 "
            f"prefix (the data must sit under the prefix given to channel 'training'); only "
            f"hidden or marker files (names starting with '.' or '_') or empty files were "
            f"uploaded; or the files have an unsupported type. Accepted: CSV/TSV/.dat text, "
            f"their .gz, Parquet, JSON lines."
        )
    return files, skipped


def _skip_reason(candidate: Path, relative: Path) -> str | None:
    if any(part.startswith(".") for part in relative.parts):
        return "hidden"
    if candidate.name.startswith("_"):
        return "marker file"
    if candidate.suffix.lower() in NOT_DATA_SUFFIXES or candidate.name.lower().startswith("readme"):
        return "not a data file"
    if candidate.is_fifo():
        return "pipe (use TrainingInputMode File or FastFile)"
    if candidate.stat().st_size == 0:
        return "empty"
    return None


def sniff(path: Path, header: str = "auto") -> SourceFile | None:
    """Detect format, compression, delimiter, header and encoding; ``None`` for an empty file."""
    with open(path, "rb") as f:
        magic = f.read(4)
    compression = "gzip" if magic[:2] == b"\x1f\x8b" else None
    if magic == b"PAR1":
        return SourceFile(path, "parquet", column_names=_parquet_columns(path))
    raw = _read_head(path, compression)
    if not raw.strip():
        return None
    encoding = _guess_encoding(raw)
    if encoding != "utf-16" and b"\x00" in raw:
        raise DataValidationError(_nul_message(path, raw))
    text = raw.decode(encoding, errors="replace").lstrip("\ufeff")
    if text.lstrip().startswith("["):
        raise DataValidationError(
            f"{path} holds a JSON array; mfrec reads JSON lines (one object per line, e.g. "
            f"pandas' to_json(orient='records', lines=True)), CSV or Parquet."
        )
    if text.lstrip().startswith("{"):
        keys = _json_keys(text.lstrip().splitlines()[0], path)
        return SourceFile(path, "jsonl", compression, column_names=keys, encoding=encoding)
    lines = [line for line in text.splitlines()[:SAMPLE_LINES] if line.strip()]
    if len(raw) == SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last sampled line may be cut in the middle
    delimiter = _detect_delimiter(lines, path)
    rows = [_split(line, delimiter) for line in lines]
    has_header = _has_header(rows) if header == "auto" else header == "yes"
    data_rows = rows[1:] if has_header else rows
    num_columns = Counter(len(r) for r in data_rows or rows).most_common(1)[0][0]
    names = tuple(rows[0]) if has_header else tuple(positional_names(num_columns))
    return SourceFile(
        path,
        "csv",
        compression,
        delimiter,
        has_header,
        names,
        encoding,
        tuple(map(tuple, data_rows)),
    )


def _parquet_columns(path: Path) -> tuple[str, ...]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return tuple(pq.read_schema(path).names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataValidationError(
            f"{path}: cannot be read as parquet ({exc}). Check that the file is complete; "
            f"re-export it if needed."
        ) from exc


def _json_keys(first_line: str, path: Path) -> tuple[str, ...]:
    try:
        record = json.loads(first_line)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise DataValidationError(
            f"{path}: the first line is not a JSON object ({exc}); JSON-lines files need one "
            f'object per line, e.g. {{"user_id": "685", "item_id": "12"}}.'
        ) from exc
    return tuple(record)


def _read_head(path: Path, compression: str | None) -> bytes:
    if compression == "gzip":
        try:
            with gzip.open(path, "rb") as f:
                return f.read(SAMPLE_BYTES)
        except (OSError, EOFError) as exc:
            raise DataValidationError(
                f"{path}: looks gzip-compressed but cannot be decompressed ({exc}); re-upload it."
            ) from exc
    with open(path, "rb") as f:
        return f.read(SAMPLE_BYTES)


def _guess_encoding(raw: bytes) -> str:
    if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    try:
        # An incremental decoder accepts a multi-byte character cut at the end of the sample.
        codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


def _nul_message(path: Path, raw: bytes) -> str:
    """Why a sample with NUL bytes is refused: UTF-16 without a BOM, or not text at all."""
    even, odd = raw[0::2].count(0), raw[1::2].count(0)
    if max(even, odd) > len(raw) // 4 and min(even, odd) * 10 < max(even, odd):
        order = "LE" if odd > even else "BE"
        return (
            f"{path} looks like UTF-16 text ({order}) without a byte-order mark: every other "
            f"byte is 0. Save it as UTF-8 (e.g. `iconv -f UTF-16{order} -t UTF-8 in.csv > "
            f"out.csv`), or as UTF-16 with a byte-order mark."
        )
    return (
        f"{path} holds NUL bytes (first at byte {raw.index(0):,}), so it is not a text file; "
        f"mfrec reads CSV/TSV text (optionally .gz), Parquet or JSON lines. Check that the "
        f"file is complete and of the type its name says; re-export it if needed."
    )


def _split(line: str, delimiter: str) -> list[str]:
    if len(delimiter) > 1:
        return line.split(delimiter)
    return next(csv.reader([line], delimiter=delimiter))


def _detect_delimiter(lines: list[str], path: Path) -> str:
    best, best_score = None, 0.0
    for delimiter in DELIMITERS:
        if not all(delimiter in line for line in lines[:1]):
            continue
        counts = Counter(len(_split(line, delimiter)) for line in lines)
        num_fields, hits = counts.most_common(1)[0]
        score = hits / len(lines)
        if num_fields >= 2 and score >= 0.8:
            return delimiter
        if num_fields >= 2 and score > best_score:
            best, best_score = delimiter, score
    if best is None:
        raise DataValidationError(
            f"{path}: cannot find a delimiter: the lines have a single field (first line: "
            f"{lines[0][:80]!r}). mfrec needs at least a user and an item column separated by a "
            f"comma, tab, semicolon, pipe, space or '::'."
        )
    return best


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _has_header(rows: list[list[str]]) -> bool:
    first, rest = rows[0], rows[1:]
    if any(is_known_name(name) for name in first):
        return True
    for j, name in enumerate(first):
        below = [row[j] for row in rest if len(row) > j and row[j].strip()]
        if below and not _is_number(name) and all(_is_number(v) for v in below):
            return True
    words = [name.strip() for name in first]
    return (
        bool(rest)
        and all(_WORD.match(w) for w in words)
        and not any(
            len(row) > j and row[j].strip() == w for row in rest for j, w in enumerate(words)
        )
    )
