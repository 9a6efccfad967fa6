"""`visionpipe duplicates` without --model takes the newest complete pushed version."""
import pytest

from visionpipe.cli.duplicates import latest_version
from visionpipe.core.errors import UserError


def test_the_newest_complete_version_is_taken_and_an_incomplete_one_is_skipped(tmp_path):
    for version in ("1", "2"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    (tmp_path / "3").mkdir()  # being copied: no saved_model.pb yet
    (tmp_path / ".tmp-4").mkdir()
    assert latest_version(tmp_path) == tmp_path / "2"


def test_no_pushed_version_is_a_one_line_error_naming_the_folder(tmp_path):
    with pytest.raises(UserError, match=f"no pushed model version under {tmp_path}"):
        latest_version(tmp_path)
    with pytest.raises(UserError, match="no pushed model version under"):
        latest_version(tmp_path / "missing")
