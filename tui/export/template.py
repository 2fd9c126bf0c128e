"""Prompts and captions from the structured features, by a template the user can replace.

A template is a TOML file: ``parts`` is a list of Python format strings over the fields below,
joined with ``separator``. A part whose fields are missing on a track is left out entirely, so a
track without a tempo never reads "unknown BPM" and a track without genres never gets one made
up: the prompt says only what the features say.

Fields: ``artist``, ``title``, ``name`` (folder name), ``genre`` (top genre), ``genres`` (all,
comma-separated), ``mood``/``moods``, ``instrument``/``instruments``, ``bpm`` (a number; absent
where the tempo is undefined), ``key`` (``A minor``), ``description`` (the chosen Flamingo key),
and every feature of the ``.INFO`` by its own name (``lufs``, ``danceability``, ...).
"""
from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.export.features import TrackRecord

DEFAULT_DESCRIPTION_KEY = "music_flamingo_full"
DEFAULT_TEMPLATE = """\
separator = ", "
parts = [
  "{genres}",
  "{moods}",
  "{instruments}",
  "{bpm:.0f} BPM",
  "{key}",
]
"""


class TemplateError(ValueError):
    """The template file is missing or malformed; the message names the file and what is wrong."""


@dataclass(frozen=True)
class PromptTemplate:
    parts: tuple[str, ...]
    separator: str = ", "
    source: str = "built-in"

    def render(self, fields: dict[str, Any]) -> str:
        out = []
        for part in self.parts:
            names = [name for _, name, _, _ in string.Formatter().parse(part) if name is not None]
            if any(fields.get(name) in (None, "", []) for name in names):
                continue
            out.append(part.format_map(fields))
        return self.separator.join(p for p in out if p.strip())

    @property
    def text(self) -> str:
        """A stable text of the template, for the export's change detection."""
        return repr((self.parts, self.separator))


def _check(parts: Any, separator: Any, where: str) -> PromptTemplate:
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        raise TemplateError(f"{where}: 'parts' must be a non-empty list of strings")
    if not isinstance(separator, str):
        raise TemplateError(f"{where}: 'separator' must be a string")
    for part in parts:
        try:
            parsed = list(string.Formatter().parse(part))
        except ValueError as exc:
            raise TemplateError(f"{where}: part {part!r}: {exc}") from exc
        for _, name, _, _ in parsed:
            if name is not None and not name.isidentifier():
                raise TemplateError(f"{where}: part {part!r}: field {name!r} must be a plain name "
                                    "(no dots, brackets or positions)")
    return PromptTemplate(tuple(parts), separator, where)


def load_template(path: Path | None = None) -> PromptTemplate:
    """The user's template file, or the built-in one."""
    if path is None:
        raw = tomllib.loads(DEFAULT_TEMPLATE)
        return _check(raw["parts"], raw["separator"], "built-in")
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TemplateError(f"{path}: template file does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{path}: not valid TOML ({exc})") from exc
    unknown = sorted(set(raw) - {"parts", "separator"})
    if unknown:
        raise TemplateError(f"{path}: unknown keys {', '.join(unknown)}; known: parts, separator")
    return _check(raw.get("parts"), raw.get("separator", ", "), str(path))


DERIVED_FIELDS = ("artist", "title", "name", "genre", "genres", "mood", "moods", "instrument", "instruments",
                  "bpm", "key", "description")


def field_names(template: PromptTemplate) -> list[str]:
    return [name for part in template.parts for _, name, _, _ in string.Formatter().parse(part) if name]


def check_fields(template: PromptTemplate, is_feature) -> None:
    """A misspelt field would silently drop its part on every track: name it instead."""
    unknown = sorted({n for n in field_names(template) if n not in DERIVED_FIELDS and not is_feature(n)})
    if unknown:
        raise TemplateError(f"{template.source}: unknown fields {', '.join(unknown)}; use "
                            f"{', '.join(DERIVED_FIELDS)} or a feature key ('mirdeck modules' lists them)")


def fields_of(record: TrackRecord, description_key: str = DEFAULT_DESCRIPTION_KEY) -> dict[str, Any]:
    """Every field a template may use, for one track; absent values are None."""
    artist, title = record.artist_title
    genres, moods, instruments = record.labels("genre"), record.labels("mood"), record.labels("instrument")
    description = record.features.get(description_key)
    fields: dict[str, Any] = {k: v for k, v in record.features.items() if k.isidentifier()}
    fields.update({
        "artist": artist, "title": title, "name": record.name,
        "genre": genres[0] if genres else None, "genres": ", ".join(genres) or None,
        "mood": moods[0] if moods else None, "moods": ", ".join(moods) or None,
        "instrument": instruments[0] if instruments else None,
        "instruments": ", ".join(instruments) or None,
        "bpm": record.bpm, "key": record.key,
        "description": description.strip() if isinstance(description, str) and description.strip() else None,
    })
    return fields
