"""``parquet``: ``tracks.parquet``, one row per track, one column per feature.

Types: numbers are float64 (int64 where every value is whole), flags bool, texts string, the
essentia_tf label dicts ``list<struct<label: string, probability: float64>>`` (most probable
first; with ``--label-maps`` ``map<string, float64>`` instead, which Hugging Face ``datasets``
cannot load: it has no map type), anything else its JSON text. ``audio`` is a
struct ``{bytes: null, path}`` (the storage of Hugging Face's ``Audio`` feature) and the file's
``huggingface`` metadata declares it, so ``datasets`` loads the column as audio. pyarrow is
imported only here, when a Parquet export runs.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import orjson

from tui.export.columns import JSON, LABELS, ColumnTypes
from tui.export.common import ExportOptions, ExportSummary
from tui.export.features import TrackRecord
from tui.export.jsonl import stream_rows
from tui.export.output import SCHEMA_VERSION, ExportError, Output

FILE = "tracks.parquet"
BATCH = 1000


def _arrow_type(pa, kind: str, label_maps: bool):
    if kind == LABELS:
        if label_maps:
            return pa.map_(pa.string(), pa.float64())
        return pa.list_(pa.struct([pa.field("label", pa.string()), pa.field("probability", pa.float64())]))
    return {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string(), JSON: pa.string()}[kind]


def _hf_feature(kind: str) -> dict[str, Any]:
    if kind == LABELS:
        return {"feature": {"label": {"dtype": "string", "_type": "Value"},
                            "probability": {"dtype": "float64", "_type": "Value"}}, "_type": "List"}
    dtype = {"bool": "bool", "int": "int64", "float": "float64", "str": "string", JSON: "string"}[kind]
    return {"dtype": dtype, "_type": "Value"}


def schema_for(pa, kinds: dict[str, str], label_maps: bool = False):
    fields = [pa.field("audio", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())]))]
    fields += [pa.field(name, _arrow_type(pa, kind, label_maps)) for name, kind in kinds.items()]
    metadata = {b"mirdeck_export_schema": str(SCHEMA_VERSION).encode()}
    if not label_maps:  # what datasets needs to read the audio column as Audio
        features = {"audio": {"_type": "Audio"}, **{n: _hf_feature(k) for n, k in kinds.items()}}
        metadata[b"huggingface"] = json.dumps({"info": {"features": features}}).encode()
    return pa.schema(fields, metadata=metadata)


def _cell(value: Any, kind: str, label_maps: bool) -> Any:
    if value is None:
        return None
    if kind == JSON:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if kind == LABELS:
        ranked = sorted(value.items(), key=lambda kv: -kv[1])
        return ranked if label_maps else [{"label": k, "probability": float(v)} for k, v in ranked]
    if kind == "float":
        return float(value)
    return value


def export(records: Iterable[TrackRecord], out: Output, options: ExportOptions, summary: ExportSummary,
           root: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ExportError("the parquet export needs pyarrow: install mirdeck's 'export' extra "
                          "(pip install -e '.[export]')") from exc
    types = ColumnTypes()
    fd, tmp = tempfile.mkstemp(prefix=".rows.", suffix=".jsonl.tmp", dir=out.root)
    try:
        with os.fdopen(fd, "wb") as fh:
            key = stream_rows(records, options, summary, root, fh, on_row=types.add)
        if out.is_current(FILE, key):
            return
        kinds = types.resolved()
        schema = schema_for(pa, kinds, options.label_maps)
        target = out.path(FILE)
        partial = target.with_name(f".{FILE}.tmp")
        with open(tmp, "rb") as fh, pq.ParquetWriter(partial, schema) as writer:
            batch: list[dict[str, Any]] = []

            def flush() -> None:
                columns = {"audio": [{"bytes": None, "path": r["audio_path"]} for r in batch]}
                for name, kind in kinds.items():
                    columns[name] = [_cell(r.get(name), kind, options.label_maps) for r in batch]
                writer.write_table(pa.Table.from_pydict(columns, schema=schema))
                batch.clear()

            for line in fh:
                batch.append(orjson.loads(line))
                if len(batch) >= BATCH:
                    flush()
            if batch or summary.exported == 0:
                flush()
        os.replace(partial, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
