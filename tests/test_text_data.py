"""Where the Time Machine text is found: dataset.path alone, else the root, the mirror, then d2l's
download (a stand-in, or a real HTTP server on this machine: the tests never leave it)."""
import hashlib
import re
from pathlib import Path

import pytest

from dlbench.config import build, compose
from dlbench.data import text
from dlbench.data.text import FILE, URL, find_corpus
from dlbench.errors import DataNotFoundError

BOOK = "The Time Machine, by H. G. Wells [1898]\n\nThe Time Traveller (for so it will be convenient"


def put(path, content=BOOK):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


@pytest.fixture
def downloads(monkeypatch):
    """download_url replaced by one that writes ["content"] where it is asked to; ["asked"]: the URLs."""
    served = {"asked": [], "content": BOOK}

    def fake(url, root, filename):
        served["asked"].append(url)
        put(Path(root) / filename, served["content"])
    monkeypatch.setattr(text, "download_url", fake)
    return served


def test_an_explicit_path_wins_and_a_missing_one_is_an_error_without_fallback(tmp_path, downloads):
    mine, home = put(tmp_path / "mine.txt"), put(tmp_path / "root" / "timemachine" / FILE)
    assert find_corpus(str(mine), str(tmp_path / "root")) == mine
    with pytest.raises(DataNotFoundError, match=re.escape("nope.txt (dataset.path, or $DLBENCH_TIMEMACHINE): no such")):
        find_corpus(str(tmp_path / "nope.txt"), str(tmp_path / "root"))  # though the root holds a copy
    assert home.is_file() and downloads["asked"] == []


def test_the_root_comes_before_the_mirror_and_the_mirror_before_a_download(tmp_path, downloads):
    mirror = put(tmp_path / "mirror" / FILE).parent
    assert find_corpus(None, str(tmp_path / "root"), str(mirror)) == mirror / FILE  # read in place
    home = put(tmp_path / "root" / "timemachine" / FILE)
    assert find_corpus(None, str(tmp_path / "root"), str(mirror)) == home
    assert downloads["asked"] == []


def test_the_config_reads_the_root_when_neither_path_nor_env_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("DLBENCH_TIMEMACHINE", raising=False)
    put(tmp_path / "timemachine" / FILE, "the time machine " * 200)
    data = build(compose(["dataset=timemachine", f"dataset.root={tmp_path}", "dataset.mirror=null",
                          "dataset.download=false"]).dataset)
    assert text.decode(data.train.tokens[:17]) == "the time machine "


def test_a_download_with_the_right_sha1_is_kept_in_the_root_for_the_next_run(tmp_path, monkeypatch, downloads):
    monkeypatch.setattr(text, "SHA1", hashlib.sha1(BOOK.encode()).hexdigest())
    home = tmp_path / "root" / "timemachine" / FILE
    assert find_corpus(None, str(tmp_path / "root"), None) == home and home.read_text() == BOOK
    assert find_corpus(None, str(tmp_path / "root"), None) == home and downloads["asked"] == [URL]  # not fetched again
    assert sorted(p.name for p in home.parent.iterdir()) == [FILE]  # no partial file left beside it


def test_a_download_with_a_wrong_sha1_is_rejected_and_not_kept(tmp_path, downloads):
    downloads["content"] = "<html>Access Denied</html>"  # what a proxy or a moved bucket serves
    with pytest.raises(DataNotFoundError) as err:
        find_corpus(None, str(tmp_path / "root"), None)
    wrong = hashlib.sha1(b"<html>Access Denied</html>").hexdigest()
    assert f"the file's SHA-1 is {wrong}, not d2l's {text.SHA1}; not kept" in str(err.value)
    assert not any((tmp_path / "root" / "timemachine").iterdir())


def test_when_all_fail_the_error_names_every_place_tried_and_how_to_get_the_text(tmp_path, monkeypatch):
    def offline(url, root, filename):
        raise OSError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(text, "download_url", offline)
    root, mirror = tmp_path / "root", tmp_path / "mirror"
    with pytest.raises(DataNotFoundError) as err:
        find_corpus(None, str(root), str(mirror))
    message, home = str(err.value), root / "timemachine" / FILE
    assert f"{home} (dataset.root): does not exist" in message
    assert f"{mirror / FILE} (dataset.mirror): does not exist" in message
    assert f"download of {URL} into {home}: failed ([Errno -3] Temporary failure" in message
    assert f"download {URL} to {home}" in message and "dataset.path=FILE" in message
    assert "DLBENCH_TIMEMACHINE" in message and "DLBENCH_DATA" in message
    with pytest.raises(DataNotFoundError, match=re.escape("download: skipped (dataset.download=false)")):
        find_corpus(None, str(root), str(mirror), download=False)


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on a free local port serving tmp_path/served/; yields its base URL."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    thread.join()


def test_the_real_download_path_fetches_over_http_and_a_missing_file_is_named(tmp_path, monkeypatch, http_server):
    base, served = http_server
    put(served / FILE)
    monkeypatch.setattr(text, "URL", f"{base}/{FILE}")
    monkeypatch.setattr(text, "SHA1", hashlib.sha1(BOOK.encode()).hexdigest())
    monkeypatch.delenv("DLBENCH_TIMEMACHINE", raising=False)
    data = build(compose(["dataset=timemachine", f"dataset.root={tmp_path / 'root'}", "dataset.mirror=null"]).dataset)
    home = tmp_path / "root" / "timemachine" / FILE
    assert home.read_text() == BOOK and text.decode(data.train.tokens[:17]) == "the time machine "

    monkeypatch.setattr(text, "URL", f"{base}/moved.txt")  # a 404 from a real server
    with pytest.raises(DataNotFoundError) as err:
        find_corpus(None, str(tmp_path / "elsewhere"), None)
    assert f"download of {base}/moved.txt into" in str(err.value) and "404" in str(err.value)
    assert not (tmp_path / "elsewhere" / "timemachine" / FILE).exists()
