"""The artifact store: atomic writes, checksum sidecars, corrupt files rebuilt,
``get_or_build`` builds once, ``fresh`` ignores what is stored."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch

from probebench.cache import ArtifactStore, atomic_write, cache_root, hash_key

PAYLOAD = {"state_dict": {"weight": torch.arange(6.0).reshape(2, 3)}, "seconds": 1.5, "names": ["a", "b"]}


def said(capsys) -> str:
    """What the store printed (to stderr, through the progress console), unwrapped."""
    return " ".join(capsys.readouterr().err.split())


def flip_a_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def same(a: dict, b: dict) -> bool:
    return torch.equal(a["state_dict"]["weight"], b["state_dict"]["weight"]) and a["seconds"] == b["seconds"]


# -- atomic_write -------------------------------------------------------------------
def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "er" / "file.txt"
    atomic_write(path, lambda tmp: tmp.write_text("first"))
    atomic_write(path, lambda tmp: tmp.write_text("second"))
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["file.txt"]


def test_atomic_write_that_fails_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half writ")
        raise KeyboardInterrupt  # a Ctrl-C in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["file.txt"]


# -- keys and the root --------------------------------------------------------------
def test_hash_key_ignores_dict_order_and_sees_every_value():
    assert hash_key({"a": 1, "b": 2}, "x") == hash_key({"b": 2, "a": 1}, "x")
    assert hash_key({"a": 1, "b": 2}, "x") != hash_key({"a": 1, "b": 3}, "x")
    assert hash_key("x", 1) != hash_key(1, "x")
    assert len(hash_key()) == 24


def test_cache_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBEBENCH_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("PROBEBENCH_CACHE")
    assert cache_root() == tmp_path / "xdg" / "probebench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "probebench"
    assert ArtifactStore().root == cache_root()


# -- save / load --------------------------------------------------------------------
def test_save_then_load_round_trips_with_a_checksum_sidecar(tmp_path):
    store = ArtifactStore(tmp_path)
    store.save("classifier", "k1", PAYLOAD)
    path = store.path("classifier", "k1")
    assert path == tmp_path / "classifier" / "k1.pt"
    assert sorted(os.listdir(path.parent)) == ["k1.pt", "k1.sha256"]
    assert len(path.with_suffix(".sha256").read_text().strip()) == 64
    loaded = store.load("classifier", "k1")
    assert loaded is not None and same(loaded, PAYLOAD) and loaded["names"] == ["a", "b"]


def test_absent_artifact_loads_as_none(tmp_path):
    assert ArtifactStore(tmp_path).load("classifier", "nope") is None


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda pt, sha: pt.write_bytes(pt.read_bytes()[:100]), id="truncated"),
        pytest.param(lambda pt, sha: pt.write_bytes(flip_a_byte(pt.read_bytes())), id="one-byte-changed"),
        pytest.param(lambda pt, sha: sha.unlink(), id="sidecar-missing"),
        pytest.param(lambda pt, sha: sha.write_text("0" * 64), id="sidecar-wrong"),
    ],
)
def test_corrupt_artifact_is_reported_and_loads_as_none(tmp_path, capsys, damage):
    store = ArtifactStore(tmp_path)
    store.save("prober", "k", PAYLOAD)
    path = store.path("prober", "k")
    damage(path, path.with_suffix(".sha256"))
    assert store.load("prober", "k") is None
    message = said(capsys)
    assert message.startswith("cache: prober artifact ") and "is corrupt" in message and "rebuilding it" in message
    assert "".join(message.split()).count(str(path)) == 1  # the path, however the console wrapped it


def test_a_file_with_a_right_checksum_that_torch_cannot_read_is_corrupt_too(tmp_path, capsys):
    store = ArtifactStore(tmp_path)
    path = store.path("prober", "k")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    path.with_suffix(".sha256").write_text(hashlib.sha256(b"not a torch file").hexdigest())
    assert store.load("prober", "k") is None
    assert "is corrupt" in said(capsys)


def test_only_tensors_and_plain_values_load(tmp_path, capsys):
    """weights_only=True: an artifact holding an arbitrary object is not unpickled."""
    store = ArtifactStore(tmp_path)
    store.save("classifier", "k", {"object": ArtifactStore(tmp_path)})
    assert store.load("classifier", "k") is None
    assert "is corrupt" in said(capsys)


# -- get_or_build and fresh ---------------------------------------------------------
def test_get_or_build_builds_once_then_loads(tmp_path):
    store = ArtifactStore(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return PAYLOAD

    first = store.get_or_build("classifier", "k", build)
    second = store.get_or_build("classifier", "k", build)
    third = ArtifactStore(tmp_path).get_or_build("classifier", "k", build)  # a later process
    assert calls == [1]
    assert same(first, PAYLOAD) and same(second, PAYLOAD) and same(third, PAYLOAD)


def test_get_or_build_rebuilds_a_corrupt_artifact_and_stores_it_again(tmp_path, capsys):
    store = ArtifactStore(tmp_path)
    store.save("classifier", "k", PAYLOAD)
    path = store.path("classifier", "k")
    path.write_bytes(path.read_bytes()[:50])
    calls = []
    rebuilt = store.get_or_build("classifier", "k", lambda: calls.append(1) or PAYLOAD)
    assert calls == [1] and same(rebuilt, PAYLOAD)
    assert "is corrupt" in said(capsys)
    loaded = store.load("classifier", "k")
    assert loaded is not None and same(loaded, PAYLOAD)


def test_a_build_that_fails_stores_nothing(tmp_path):
    store = ArtifactStore(tmp_path)

    def fails():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        store.get_or_build("classifier", "k", fails)
    assert not store.path("classifier", "k").exists()
    assert store.get_or_build("classifier", "k", lambda: PAYLOAD) is PAYLOAD


def test_fresh_ignores_what_is_stored_and_overwrites_it(tmp_path):
    ArtifactStore(tmp_path).save("classifier", "k", {"version": torch.tensor(1)})
    fresh = ArtifactStore(tmp_path, fresh=True)
    assert fresh.load("classifier", "k") is None
    built = fresh.get_or_build("classifier", "k", lambda: {"version": torch.tensor(2)})
    assert int(built["version"]) == 2
    loaded = ArtifactStore(tmp_path).load("classifier", "k")
    assert loaded is not None and int(loaded["version"]) == 2


# -- the key inside each artifact ---------------------------------------------------
def test_an_artifact_swapped_into_another_keys_place_is_caught(tmp_path, capsys):
    store = ArtifactStore(tmp_path)
    store.save("classifier", "first", {"value": torch.tensor(1)})
    store.save("classifier", "second", {"value": torch.tensor(2)})
    for suffix in (".pt", ".sha256"):  # a consistent swap: the checksums alone cannot tell
        first, second = (tmp_path / "classifier" / f"{k}{suffix}" for k in ("first", "second"))
        data = first.read_bytes()
        first.write_bytes(second.read_bytes())
        second.write_bytes(data)
    assert store.load("classifier", "first") is None
    assert "does not hold classifier/first" in said(capsys)
    assert "__probebench_key__" not in ArtifactStore(tmp_path).get_or_build("x", "k", lambda: {"a": 1})


def test_a_check_rejects_a_stored_payload_like_a_fresh_one(tmp_path, capsys):
    store = ArtifactStore(tmp_path)
    store.save("scores", "k", {"scores": torch.tensor([0.5, float("nan")])})

    def finite(payload):
        if not torch.isfinite(payload["scores"]).all():
            raise ValueError("NaN scores")

    rebuilt = store.get_or_build("scores", "k", lambda: {"scores": torch.tensor([0.5, 0.25])}, check=finite)
    assert torch.equal(rebuilt["scores"], torch.tensor([0.5, 0.25]))
    assert "NaN scores" in said(capsys)
    assert torch.equal(store.load("scores", "k", check=finite)["scores"], torch.tensor([0.5, 0.25]))


# -- write failures -----------------------------------------------------------------
def test_a_failed_write_is_one_warning_and_the_work_goes_on(tmp_path, capsys, monkeypatch):
    import errno

    import probebench.cache as cache

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "atomic_write", full)
    store = ArtifactStore(tmp_path)
    assert store.get_or_build("a", "k", lambda: {"n": 1}) == {"n": 1}
    assert store.get_or_build("b", "k", lambda: {"n": 2}) == {"n": 2}
    text = said(capsys)
    assert text.count("cannot write") == 1 and "No space left on device" in text and "without caching" in text


def test_a_folder_where_an_artifact_belongs_is_reported_and_heals(tmp_path, capsys):
    store = ArtifactStore(tmp_path)
    (tmp_path / "classifier" / "k.pt" / "junk").mkdir(parents=True)
    assert store.get_or_build("classifier", "k", lambda: {"n": 1}) == {"n": 1}
    assert "is a folder where a cached file belongs" in said(capsys)
    assert store.load("classifier", "k") == {"n": 1} and (tmp_path / "classifier" / "k.pt").is_file()


def test_a_cache_dir_that_is_a_file_is_one_clear_error(tmp_path):
    from probebench.errors import UserError

    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cache directory .*file is a file; pass --cache-dir DIR"):
        ArtifactStore(tmp_path / "file")
