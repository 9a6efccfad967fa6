"""TFX-style spans: ``data.path`` with ``{SPAN}`` (and optionally ``{VERSION}``), e.g.
``incoming/span-{SPAN}/``. The ingest takes the latest span (or ``data.span``) and the
``data.span_window - 1`` spans before it, each at its latest version; resolved when the
component runs (a compiled or scheduled pipeline sees new spans), recorded on the Examples."""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from visionpipe.core.config import DataConfig
from visionpipe.core.errors import ConfigError

SPAN_TOKEN, VERSION_TOKEN = "{SPAN}", "{VERSION}"


def has_spans(path: str) -> bool:
    return SPAN_TOKEN in path


@dataclass(frozen=True)
class SpanChoice:
    spans: Tuple[int, ...]  # oldest first; the last is the Examples' span
    versions: Tuple[Optional[int], ...]
    paths: Tuple[str, ...]

    @property
    def span(self) -> int:
        return self.spans[-1]

    @property
    def version(self) -> Optional[int]:
        return self.versions[-1]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SpanChoice":
        values = json.loads(text)
        return cls(**{k: tuple(v) for k, v in values.items()})


def find_spans(pattern: str) -> List[Tuple[int, Optional[int], str]]:
    """(span, version, path) of every path the pattern matches, by span then version."""
    import tensorflow as tf

    stem = pattern.rstrip("/")
    glob = stem.replace(SPAN_TOKEN, "*").replace(VERSION_TOKEN, "*")
    regex = re.compile(re.escape(stem).replace(re.escape(SPAN_TOKEN), r"(?P<span>\d+)")
                       .replace(re.escape(VERSION_TOKEN), r"(?P<version>\d+)") + "$")
    found = []
    for path in tf.io.gfile.glob(glob):
        match = regex.match(path.rstrip("/"))
        if match:
            version = match.groupdict().get("version")
            found.append((int(match["span"]), None if version is None else int(version), path))
    return sorted(found, key=lambda f: (f[0], -1 if f[1] is None else f[1]))


def choose_spans(data: DataConfig) -> SpanChoice:
    """The spans ``data`` asks for; a one-line error naming data.path or data.span if absent."""
    found = find_spans(data.path)
    if not found:
        raise ConfigError(f"data.path: nothing matches {data.path} ({SPAN_TOKEN} is a span "
                          "number, e.g. span-3)")
    latest_version = {}
    for span, version, path in found:  # sorted: the last of a span is its latest version
        latest_version[span] = (version, path)
    spans = sorted(latest_version)
    if data.span >= 0 and data.span not in latest_version:
        raise ConfigError(f"data.span: span {data.span} not found under {data.path}; "
                          f"found {spans}")
    end = spans.index(data.span) + 1 if data.span >= 0 else len(spans)
    chosen = spans[max(0, end - data.span_window):end]
    return SpanChoice(spans=tuple(chosen), versions=tuple(latest_version[s][0] for s in chosen),
                      paths=tuple(latest_version[s][1] for s in chosen))


def with_spans(data: DataConfig, choice: Optional[SpanChoice]) -> DataConfig:
    """``data`` reading the chosen spans: its path is the latest span's, ``span_paths`` all."""
    if choice is None:
        return data
    return dataclasses.replace(data, path=choice.paths[-1], span=choice.span,
                               span_paths=list(choice.paths))


def resolve(data: DataConfig) -> Tuple[DataConfig, Optional[SpanChoice]]:
    """``data`` with its spans resolved, and the choice (None without a span pattern)."""
    if not has_spans(data.path):
        return data, None
    choice = choose_spans(data)
    return with_spans(data, choice), choice
