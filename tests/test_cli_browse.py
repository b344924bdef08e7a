"""kvfs ls, cat, put, get, rm, stat and url, run through the command against real stores."""

from __future__ import annotations

import os
import urllib.request

import pytest
from cli_support import (
    fresh_bucket,
    invoke,
    moto_store_url,
    remove_bucket,
    s3_client,
    s3_environment,
)
from servers import moto_url

from kvfs.fs import FilesystemStore


@pytest.fixture
def store(store_dir):
    store = FilesystemStore(store_dir)
    store.put("top", b"top value")
    store.put("photos/2024/cat.jpg", b"\x00\xffcat" * 100)
    store.put("photos/2024/dog.jpg", b"dog")
    store.put("photos/readme", b"")
    return store


@pytest.fixture
def url(store_dir):
    return str(store_dir)


def test_ls_shows_one_level_with_directories_marked(store, url):
    result = invoke(["ls", url])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["photos/", "top"]


def test_ls_shows_symbolic_links_as_name_arrow_target(store, url):
    store.symlink("photos/latest", "2024/cat.jpg")
    store.put("both", b"value")
    store.put("both.rclonelink", b"elsewhere")  # a value and a link of one name: the value wins
    assert "photos/latest" in invoke(["ls", url, "photos/"]).stdout.splitlines()
    long = invoke(["ls", "-l", url, "photos/"]).stdout
    assert "photos/latest -> 2024/cat.jpg" in long
    assert "LINK" in long
    top = invoke(["ls", url]).stdout.splitlines()
    assert "both" in top and "both.rclonelink" in top


def test_ls_of_a_directory_name_lists_inside_it_and_a_prefix_filters(store, url):
    assert invoke(["ls", url, "photos"]).stdout.splitlines() == ["photos/2024/", "photos/readme"]
    assert invoke(["ls", url, "photos/"]).stdout.splitlines() == ["photos/2024/", "photos/readme"]
    assert invoke(["ls", url, "photos/2024/c"]).stdout.splitlines() == ["photos/2024/cat.jpg"]


def test_ls_recursive_long_and_human(store, url):
    result = invoke(["ls", "-r", url])
    assert result.stdout.splitlines() == [
        "photos/2024/cat.jpg",
        "photos/2024/dog.jpg",
        "photos/readme",
        "top",
    ]
    lines = invoke(["ls", "-rl", url, "photos/"]).stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["500", "3", "0"]
    assert lines[0].endswith("  photos/2024/cat.jpg")
    store.put("big", b"x" * 1536)
    line = [text for text in invoke(["ls", "-lh", url]).stdout.splitlines() if text.endswith(" big")][0]
    assert line.split()[0] == "1.5K"
    assert invoke(["ls", "-l", url]).stdout.splitlines()[0].split()[0] == "1536"


def test_ls_of_nothing_under_a_prefix_is_not_found_but_an_empty_store_is_fine(url, tmp_path):
    result = invoke(["ls", url, "nothing/here"])
    assert result.exit_code == 3
    assert "nothing/here" in result.stderr and result.stdout == ""
    (tmp_path / "empty").mkdir()
    empty = invoke(["ls", str(tmp_path / "empty")])
    assert empty.exit_code == 0 and empty.stdout == ""


def test_ls_of_a_missing_directory_store_says_so(tmp_path):
    missing = tmp_path / "missing"
    result = invoke(["ls", str(missing)])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().endswith(f" ls: {missing}: the store's directory {missing} does not exist")
    assert not missing.exists()


def test_cat_is_binary_safe_and_concatenates(store, url):
    result = invoke(["cat", url, "photos/2024/cat.jpg", "top"])
    assert result.exit_code == 0
    assert result.stdout_bytes == b"\x00\xffcat" * 100 + b"top value"


def test_put_from_stdin_and_from_a_file(store, url, tmp_path):
    data = bytes(range(256)) * 1000
    assert invoke(["put", url, "in/stdin"], input=data).exit_code == 0
    assert store.get("in/stdin") == data
    source = tmp_path / "local.bin"
    source.write_bytes(data[::-1])
    assert invoke(["put", url, "in/file", str(source)]).exit_code == 0
    assert store.get("in/file") == data[::-1]
    assert invoke(["put", url, "in/dash", "-"], input=b"").exit_code == 0
    assert store.get("in/dash") == b""


def test_get_writes_a_file_named_after_the_key_or_to_stdout(store, url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke(["get", url, "photos/2024/dog.jpg"]).exit_code == 0
    assert (tmp_path / "dog.jpg").read_bytes() == b"dog"
    target = tmp_path / "out"
    target.mkdir()
    assert invoke(["get", url, "top", str(target)]).exit_code == 0
    assert (target / "top").read_bytes() == b"top value"
    assert invoke(["get", url, "top", str(tmp_path / "named")]).exit_code == 0
    assert (tmp_path / "named").read_bytes() == b"top value"
    assert invoke(["get", url, "top", "-"]).stdout_bytes == b"top value"


def test_get_of_a_missing_key_creates_no_file(url, tmp_path):
    result = invoke(["get", url, "ghost", str(tmp_path / "ghost")])
    assert result.exit_code == 3
    assert not (tmp_path / "ghost").exists()


def test_rm_deletes_keys_and_checks_all_of_them_first(store, url):
    result = invoke(["rm", url, "top", "ghost"])
    assert result.exit_code == 3 and "ghost" in result.stderr
    assert "top" in store  # nothing was deleted
    assert invoke(["rm", url, "top"]).exit_code == 0
    assert "top" not in store
    assert invoke(["rm", "-f", url, "ghost"]).exit_code == 0


def test_rm_recursive_needs_yes_off_a_terminal_and_removes_the_directory(store, url, store_dir):
    refused = invoke(["rm", "-r", url, "photos"])
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert len(store.keys("photos/")) == 3
    result = invoke(["rm", "-r", "--yes", url, "photos"])
    assert result.exit_code == 0
    assert store.keys() == ["top"]
    assert not (store_dir / "photos").exists()  # the emptied directories went too
    assert invoke(["rm", "-r", "--yes", url, "photos"]).exit_code == 3


def test_stat_shows_size_and_time_or_a_directory(store, url):
    result = invoke(["stat", url, "photos/2024/cat.jpg"])
    assert result.exit_code == 0
    assert "size:     500 (500)" in result.stdout and "modified: 20" in result.stdout
    directory = invoke(["stat", url, "photos"])
    assert directory.exit_code == 0 and "directory" in directory.stdout
    missing = invoke(["stat", url, "ghost"])
    assert missing.exit_code == 3


def test_url_prints_the_stores_url_for_a_key(store, url, store_dir):
    result = invoke(["url", url, "photos/2024/cat.jpg"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "file://" + os.path.join(str(store_dir), "photos/2024/cat.jpg")


def test_url_of_a_store_without_urls_fails_with_one_line(tmp_path):
    result = invoke(["url", f"sqlite:///{tmp_path}/x.db", "k"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "cannot give URLs" in result.stderr


# ---------------------------------------------------------------------- S3


@pytest.fixture
def bucket():
    with fresh_bucket() as name:
        yield name


def test_s3_store_named_by_url_options_or_by_boto3_environment(bucket, monkeypatch):
    by_url = moto_store_url(bucket, "photos")
    assert invoke(["put", by_url, "2024/cat.jpg"], input=b"meow").exit_code == 0
    names = [item["Key"] for item in s3_client(moto_url()).list_objects_v2(Bucket=bucket)["Contents"]]
    assert names == ["photos/2024/cat.jpg"]  # the URL's path is a directory of the bucket

    for key, value in s3_environment(moto_url()).items():
        monkeypatch.setenv(key, value)
    for url in (f"s3://{bucket}/photos", f"s3://{bucket}/photos/", by_url):
        assert invoke(["cat", url, "2024/cat.jpg"]).stdout_bytes == b"meow"
        assert invoke(["ls", "-r", url]).stdout.splitlines() == ["2024/cat.jpg"]
    assert invoke(["ls", f"s3://{bucket}"]).stdout.splitlines() == ["photos/"]
    assert invoke(["ls", "-r", f"s3://{bucket}/photos/2024"]).stdout.splitlines() == ["cat.jpg"]

    presigned = invoke(["url", f"s3://{bucket}/photos", "2024/cat.jpg"]).stdout.strip()
    with urllib.request.urlopen(presigned, timeout=30) as response:
        assert response.read() == b"meow"


def test_a_missing_bucket_is_created_only_when_the_url_says_so(bucket):
    name = f"{bucket}-new"  # unique too, and no bucket yet
    url = moto_store_url(name, "p")
    refused = invoke(["put", url, "k"], input=b"v")
    assert refused.exit_code == 1 and "NoSuchBucket" in refused.stderr
    assert "kvfs-test-secret" not in refused.stderr and "kvfs-test:***@" in refused.stderr
    try:
        assert invoke(["put", f"{url}&create=1", "k"], input=b"v").exit_code == 0
        assert invoke(["cat", url, "k"]).stdout_bytes == b"v"
    finally:
        remove_bucket(name)


def test_every_verb_has_help_with_examples():
    for verb in ["ls", "cat", "put", "get", "rm", "stat", "url", "cp", "sync"]:
        result = invoke([verb, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.stdout and f"kvfs {verb}" in result.stdout
    top = invoke(["--help"])
    assert "Exit codes" in top.stdout
    assert invoke(["--version"]).stdout.startswith("kvfs ")
