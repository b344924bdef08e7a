"""How S3 and GCS objects carry modes, owners and times: the forms s3fs and rclone use."""

from __future__ import annotations

import stat

from hypothesis import given
from hypothesis import strategies as st

from kvfs import Metadata
from kvfs.net import metadata_fields, parse_metadata


def test_s3fs_form() -> None:
    fields = metadata_fields(Metadata(mode=0o640, uid=1000, gid=100, mtime=1_700_000_000.25))
    assert fields == {"mode": "33184", "uid": "1000", "gid": "100", "mtime": "1700000000.25"}
    assert metadata_fields(Metadata(mode=0o750), directory=True) == {"mode": str(stat.S_IFDIR | 0o750)}
    assert metadata_fields(Metadata(mtime=1_700_000_000)) == {"mtime": "1700000000"}


def test_rclone_gcs_form() -> None:
    fields = metadata_fields(Metadata(mtime=1_609_556_645.5), rfc3339=True)
    assert fields == {"mtime": "2021-01-02T03:04:05.5Z"}
    assert parse_metadata({"mtime": "2021-01-02T03:04:05.123456789Z"}).mtime == 1_609_556_645.123456789
    assert parse_metadata({"mtime": "2021-01-02T04:04:05+01:00"}).mtime == 1_609_556_645


def test_what_cannot_be_read_is_none() -> None:
    kept = parse_metadata({"Mode": "33188", "uid": "-1", "gid": "x", "mtime": "yesterday", "other": "1"})
    assert kept == Metadata(mode=0o644)  # names in any case; only the permission bits
    assert parse_metadata(None) == Metadata() == parse_metadata({})
    assert parse_metadata({"mtime": "nan"}).mtime is None


@given(st.floats(min_value=2**30, max_value=4e9), st.booleans())
def test_a_time_round_trips_exactly(when: float, rfc3339: bool) -> None:
    # From 2004 on a float's step is coarser than a nanosecond: nine decimals keep it.
    assert parse_metadata(metadata_fields(Metadata(mtime=when), rfc3339=rfc3339)).mtime == when


def test_a_time_just_below_a_second_stays_in_that_second() -> None:
    below = 1_600_000_000.9999998  # the float nearest below 1600000001
    for rfc3339 in (False, True):
        back = parse_metadata(metadata_fields(Metadata(mtime=below), rfc3339=rfc3339)).mtime
        assert back is not None and int(back) == 1_600_000_000
