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


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        new_file = atomic_write_text(tmp_path / "new.txt", "x")
        assert stat.S_IMODE(new_file.stat().st_mode) == 0o644  # not mkstemp's 0600
        kept = tmp_path / "script.sh"
        kept.write_text("old")
        kept.chmod(0o755)
        atomic_write_text(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o755
        with atomic_directory(tmp_path / "index") as tmp:
            (tmp / "a").write_text("1")
        assert stat.S_IMODE((tmp_path / "index").stat().st_mode) == 0o755  # not mkdtemp's 0700
    finally:
        os.umask(old)


def test_atomic_open_streams_and_discards_a_failed_write(tmp_path):
    from envs.core.io import atomic_open

    target = tmp_path / "rows.jsonl"
    with atomic_open(target) as fh:
        for i in range(3):
            fh.write(f"{i}\n")
    assert target.read_text() == "0\n1\n2\n"
    with pytest.raises(KeyError):
        with atomic_open(target) as fh:
            fh.write("partial")
            raise KeyError("crash")
    assert target.read_text() == "0\n1\n2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(target, "a"):
            pass


def test_atomic_directory_puts_the_old_version_back_when_the_swap_fails(tmp_path, monkeypatch):
    import os

    target = tmp_path / "index"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("v1")
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        with atomic_directory(target) as tmp:
            (tmp / "a").write_text("v2")
    monkeypatch.setattr(os, "replace", real_replace)
    assert (target / "a").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
