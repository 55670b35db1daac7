"""The work each job type does. A processor returns the result bytes and a small summary; it raises
`JobInputError` when the input itself is unusable (retrying cannot help), anything else is retried."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from PIL import Image, UnidentifiedImageError

from services.common.jobs import PARAMS_MODELS, CsvInputParams, JsonInputParams, ThumbnailParams

# Pillow's decompression-bomb guard raises above this many pixels; keep it explicit.
Image.MAX_IMAGE_PIXELS = 64_000_000
MAX_INPUT_BYTES = 50 * 1024 * 1024


class JobInputError(ValueError):
    """The job's input cannot be processed; the job fails without further retries."""


@dataclass(frozen=True)
class Output:
    data: bytes
    extension: str
    summary: dict[str, Any]


InputLoader = Callable[[], bytes]


def thumbnail(params: ThumbnailParams, load: InputLoader) -> Output:
    data = load()  # storage errors propagate and are retried; only decoding errors are the input's fault
    try:
        with Image.open(io.BytesIO(data)) as image:
            source_size = image.size
            image.thumbnail((params.width, params.height))
            converted = image.convert("RGBA" if params.format in ("png", "webp") else "RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise JobInputError(f"input is not a readable image: {exc}") from exc
    buffer = io.BytesIO()
    converted.save(buffer, format=params.format.upper())
    summary = {
        "source_width": source_size[0],
        "source_height": source_size[1],
        "width": converted.width,
        "height": converted.height,
        "format": params.format,
    }
    return Output(buffer.getvalue(), params.format, summary)


def _read_csv(text: str) -> tuple[list[str], list[list[str]]]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise JobInputError(f"input is not valid CSV: {exc}") from exc
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise JobInputError("input CSV needs a header row")
    header, body = rows[0], [row for row in rows[1:] if row]
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise JobInputError(f"CSV line {line} has {len(row)} fields, the header has {len(header)}")
    return header, body


def _text(params: CsvInputParams | JsonInputParams, load: InputLoader) -> str:
    inline = params.csv if isinstance(params, CsvInputParams) else params.json_text
    if inline is not None:
        return inline
    try:
        return load().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobInputError(f"input is not UTF-8 text: {exc}") from exc


def _as_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _column_summary(values: list[str]) -> dict[str, Any]:
    present = [v for v in values if v.strip() != ""]
    numbers = [n for n in map(_as_number, present) if n is not None]
    summary: dict[str, Any] = {"count": len(present), "missing": len(values) - len(present)}
    if present and len(numbers) == len(present):
        summary |= {
            "kind": "numeric",
            "min": min(numbers),
            "max": max(numbers),
            "mean": statistics.fmean(numbers),
            "median": statistics.median(numbers),
            "stdev": statistics.stdev(numbers) if len(numbers) > 1 else 0.0,
        }
    else:
        summary |= {"kind": "text", "distinct": len(set(present))}
    return summary


def csv_summary(params: CsvInputParams, load: InputLoader) -> Output:
    header, body = _read_csv(_text(params, load))
    columns = {name: _column_summary([row[i] for row in body]) for i, name in enumerate(header)}
    report = {"rows": len(body), "columns": columns}
    return Output(orjson.dumps(report), "json", {"rows": len(body), "columns": len(header)})


def csv_to_json(params: CsvInputParams, load: InputLoader) -> Output:
    header, body = _read_csv(_text(params, load))
    records = [dict(zip(header, row, strict=True)) for row in body]
    return Output(orjson.dumps(records), "json", {"records": len(records)})


def json_to_csv(params: JsonInputParams, load: InputLoader) -> Output:
    try:
        records = orjson.loads(_text(params, load))
    except orjson.JSONDecodeError as exc:
        raise JobInputError(f"input is not valid JSON: {exc}") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise JobInputError("input JSON must be an array of objects")
    header: list[str] = []
    for record in records:
        header.extend(key for key in record if key not in header)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for record in records:
        nested = [k for k, v in record.items() if isinstance(v, dict | list)]
        if nested:
            raise JobInputError(f"input objects must be flat; field {nested[0]!r} holds a nested value")
        writer.writerow(record)
    return Output(buffer.getvalue().encode(), "csv", {"records": len(records), "columns": len(header)})


_PROCESSORS: dict[str, Callable[[Any, InputLoader], Output]] = {
    "image.thumbnail": thumbnail,
    "data.csv_summary": csv_summary,
    "convert.csv_to_json": csv_to_json,
    "convert.json_to_csv": json_to_csv,
}


def run_job(job_type: str, raw_params: dict[str, Any], load: InputLoader) -> Output:
    if job_type not in _PROCESSORS:
        raise JobInputError(f"unknown job type {job_type!r}; known: {', '.join(sorted(_PROCESSORS))}")
    params = PARAMS_MODELS[job_type].model_validate(raw_params)
    return _PROCESSORS[job_type](params, load)
