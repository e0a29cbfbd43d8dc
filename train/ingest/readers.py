"""Read one sniffed file into an Arrow table of the wanted columns, collecting unparseable rows.

Text is parsed by ``pyarrow.csv`` (multi-threaded C++); rows with the wrong number of fields are
collected by pyarrow's invalid-row handler, so Python only ever sees the bad rows. Id and
event-type columns are read as strings so that ids such as ``007`` keep their leading zeros.
When a file turns out not to be UTF-8 past the sniffed sample it is read again as latin-1.
A text line longer than :data:`MAX_LINE_BYTES` is refused with its line number.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.csv as pacsv

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest.formats import SourceFile

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 5
MAX_LINE_BYTES = 1 << 20  # pyarrow's read block: a longer line cannot be parsed
_MULTI_CHAR_STANDIN = b"\x1f"  # '::' is replaced by this byte: pyarrow wants 1-char delimiters


@dataclass
class RawTable:
    """A file's columns as read, plus what is needed to point at its lines in messages."""

    table: pa.Table
    source: SourceFile
    bad_row_count: int = 0
    bad_row_examples: list[str] = field(default_factory=list)
    _invalid_numbers: list[int] = field(default_factory=list, repr=False)

    def locate(self, rows: Sequence[int]) -> list[str]:
        """``"line N"`` (text files, 1-based physical lines) or ``"row N"`` for data rows."""
        if self.source.kind != "csv":
            return [f"row {r + 1}" for r in rows]
        numbers = []
        for r in rows:  # pyarrow numbers non-empty lines (header included) from 1
            n = r + 1 + int(self.source.has_header)
            for skipped in self._invalid_numbers:
                if skipped <= n:
                    n += 1
            numbers.append(n)
        return [f"line {n}" for n in _physical_lines(self.source, numbers)]


def read_source(
    source: SourceFile, columns: Sequence[str], text_columns: Sequence[str]
) -> RawTable:
    """Read ``columns`` of ``source``; ``text_columns`` are kept as strings.

    Raises
    ------
    DataValidationError
        When the file cannot be parsed at all (corrupt Parquet, broken gzip, ...).
    """
    try:
        if source.kind == "parquet":
            import pyarrow.parquet as pq

            return RawTable(pq.read_table(source.path, columns=list(columns)), source)
        if source.kind == "jsonl":
            return _read_jsonl(source, columns)
        return _read_csv(source, columns, text_columns)
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise DataValidationError(
            f"{source.path}: cannot be read as {source.describe()} ({exc}). Check that the file "
            f"is complete and of the type its name says; re-export it if needed."
        ) from exc


def _open_text(source: SourceFile):
    if source.delimiter and len(source.delimiter) > 1:
        with pa.input_stream(source.path, compression=source.compression) as f:
            data = f.read()
        return pa.BufferReader(data.replace(source.delimiter.encode(), _MULTI_CHAR_STANDIN))
    return pa.input_stream(source.path, compression=source.compression)


def _read_csv(source: SourceFile, columns, text_columns, use_threads: bool = True) -> RawTable:
    invalid: list[tuple[int | None, str, int, int]] = []

    def on_invalid(row) -> str:
        invalid.append((row.number, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    delimiter = source.delimiter if len(source.delimiter) == 1 else _MULTI_CHAR_STANDIN.decode()
    read_options = pacsv.ReadOptions(
        column_names=list(source.column_names),
        skip_rows=int(source.has_header),
        encoding=source.encoding,
        use_threads=use_threads,
        block_size=MAX_LINE_BYTES,
    )
    parse_options = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid)
    convert_options = pacsv.ConvertOptions(
        include_columns=list(columns),
        column_types={name: pa.string() for name in text_columns},
        strings_can_be_null=False,
    )
    try:
        with _open_text(source) as stream:
            table = pacsv.read_csv(stream, read_options, parse_options, convert_options)
    except pa.ArrowInvalid as exc:
        if "straddl" in str(exc):  # a row longer than one read block
            raise DataValidationError(_long_line_message(source)) from None
        if "UTF8" not in str(exc) or source.encoding != "utf-8":
            raise
        table = None
    if table is None or any(pa.types.is_binary(t) for t in table.schema.types):
        if source.encoding == "utf-8":
            logger.warning("%s is not valid UTF-8: reading it as latin-1", source.path)
            return _read_csv(replace(source, encoding="latin-1"), columns, text_columns)
    if invalid and use_threads and invalid[0][0] is None:
        # Line numbers are only known to a single-threaded parse: redo it for messages.
        return _read_csv(source, columns, text_columns, use_threads=False)
    invalid.sort(key=lambda bad: bad[0] or 0)
    raw = RawTable(table, source, len(invalid), _invalid_numbers=[b[0] or 0 for b in invalid])
    shown = invalid[:MAX_EXAMPLES]
    lines = _physical_lines(source, [b[0] for b in shown]) if shown[:1] and shown[0][0] else []
    for i, (_, text, expected, actual) in enumerate(shown):
        where = f"line {lines[i]}" if lines else "a line"
        text = text.replace(_MULTI_CHAR_STANDIN.decode(), "::")
        raw.bad_row_examples.append(f"{where}: {text[:60]!r} has {actual} fields, not {expected}")
    return raw


def _long_line_message(source: SourceFile) -> str:
    """Name the first line longer than :data:`MAX_LINE_BYTES`."""
    with pa.input_stream(source.path, compression=source.compression) as stream:
        for number, line in enumerate(_iter_lines(stream), start=1):
            if len(line) > MAX_LINE_BYTES:
                return (
                    f"{source.path}: line {number:,} is too long ({len(line):,} bytes; mfrec "
                    f"cannot read lines over {MAX_LINE_BYTES:,} bytes). A line break is probably "
                    f"missing there, or a field holds a whole document: fix or remove that line."
                )
    return (
        f"{source.path}: a line is too long to parse (over {MAX_LINE_BYTES:,} bytes with its "
        f"quoted line breaks); check the quotes of that file."
    )


def _physical_lines(source: SourceFile, numbers: Sequence[int]) -> list[int]:
    """Map pyarrow's row numbers (counting non-empty lines) to physical 1-based line numbers."""
    wanted = sorted(set(numbers))
    found: dict[int, int] = {}
    non_empty = 0
    with pa.input_stream(source.path, compression=source.compression) as stream:
        for physical, line in enumerate(_iter_lines(stream), start=1):
            if line.strip(b"\r\n"):
                non_empty += 1
                if non_empty in wanted:
                    found[non_empty] = physical
                    if len(found) == len(wanted):
                        break
    return [found.get(n, n) for n in numbers]


def _iter_lines(stream, chunk_size: int = 1 << 20):
    rest = b""
    while chunk := stream.read(chunk_size):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _read_jsonl(source: SourceFile, columns: Sequence[str]) -> RawTable:
    import pyarrow.json as pajson

    with pa.input_stream(source.path, compression=source.compression) as f:
        data = f.read()
    if source.encoding != "utf-8":
        data = data.decode(source.encoding).encode("utf-8")
    try:
        table = pajson.read_json(pa.BufferReader(data))
    except pa.ArrowInvalid as exc:
        # Mixed types (an id that is a number in one row and a string in another) or broken
        # lines: fall back to a per-line parse, which also finds the bad lines.
        logger.info("%s: %s; parsing line by line", source.path, exc)
        return _read_jsonl_slow(source, data, columns)
    present = [c for c in columns if c in table.column_names]
    return RawTable(table.select(present), source)


def _read_jsonl_slow(source: SourceFile, data: bytes, columns: Sequence[str]) -> RawTable:
    records, bad = [], []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            bad.append(
                f"line {number}: {line[:60].decode(errors='replace')!r} is not a JSON object"
            )
            continue
        records.append({c: _jsonl_cell(record.get(c)) for c in columns})
    table = pa.Table.from_pylist(records, schema=pa.schema([(c, pa.string()) for c in columns]))
    return RawTable(table, source, len(bad), bad[:MAX_EXAMPLES])


def _jsonl_cell(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)
