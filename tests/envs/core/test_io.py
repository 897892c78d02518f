import pytest

from envs.core.io import atomic_directory, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_atomic_directory_keeps_the_old_version_on_failure(tmp_path):
    target = tmp_path / "index"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "a").write_text("half-written")
            raise RuntimeError("crash while writing")
    assert (target / "a").read_text() == "v1"
    with atomic_directory(target) as tmp:
        (tmp / "b").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    with pytest.raises(FileExistsError):
        with atomic_directory(target, overwrite=False) as tmp:
            pass
