"""{SPAN}/{VERSION} in data.path: the latest span (or data.span), a window of spans, each at
its latest version; the ingest of a window lists every span's images by span folder."""
import pytest

from visionpipe.components.image_example_gen import spans
from visionpipe.components.image_example_gen.sources import make_source
from visionpipe.core.config import DataConfig, load_config
from visionpipe.core.errors import ConfigError
from visionpipe.datasets import shapes


def _spans(root, numbers, per_span=6):
    for number in numbers:
        shapes.write_classification_folder(root / f"span-{number}", per_span, 24, seed=number,
                                           classes=["circle", "square"])


def _data(root, **kw):
    return DataConfig(source="folder", path=f"{root}/span-{{SPAN}}/", **kw)


def test_the_latest_span_is_chosen_by_number_not_by_name(tmp_path):
    _spans(tmp_path, [2, 10, 9])
    choice = spans.choose_spans(_data(tmp_path))
    assert choice.spans == (10,) and choice.paths[0].rstrip("/").endswith("span-10")


def test_a_window_takes_the_spans_before_the_chosen_one(tmp_path):
    _spans(tmp_path, [1, 2, 3, 4])
    assert spans.choose_spans(_data(tmp_path, span_window=3)).spans == (2, 3, 4)
    assert spans.choose_spans(_data(tmp_path, span=2, span_window=3)).spans == (1, 2)


def test_each_span_is_read_at_its_latest_version(tmp_path):
    for span, version in [(1, 0), (1, 2), (2, 1)]:
        (tmp_path / f"span-{span}" / f"v{version}").mkdir(parents=True)
    data = DataConfig(source="folder", path=f"{tmp_path}/span-{{SPAN}}/v{{VERSION}}")
    choice = spans.choose_spans(DataConfig(**{**data.__dict__, "span_window": 2}))
    assert choice.spans == (1, 2) and choice.versions == (2, 1)


def test_a_missing_span_or_pattern_match_is_a_one_line_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data.path: nothing matches"):
        spans.choose_spans(_data(tmp_path))
    _spans(tmp_path, [1])
    with pytest.raises(ConfigError, match=r"data.span: span 5 not found .* found \[1\]"):
        spans.choose_spans(_data(tmp_path, span=5))


def test_a_window_of_spans_lists_every_spans_images_named_by_span(tmp_path):
    _spans(tmp_path, [1, 2, 3], per_span=4)
    source = make_source(_data(tmp_path, span_window=2))
    names = [item.filename for item in source.items]
    assert len(names) == 8 and sum(n.startswith("span-2/") for n in names) == 4
    assert sum(n.startswith("span-3/") for n in names) == 4
    assert source.class_names == ["circle", "square"]


def test_span_keys_are_checked_against_the_source():
    with pytest.raises(ConfigError, match="data.span_window: needs a {SPAN} pattern"):
        load_config(overrides=["data.source=folder", "data.path=x", "data.span_window=2"])
    with pytest.raises(ConfigError, match="data.path: spans"):
        load_config(overrides=["data.source=tfrecord", "data.path=x-{SPAN}"])
