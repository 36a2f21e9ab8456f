"""Server credentials: precedence (option > environment > file), the private file, bad files."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from tasks.server.credentials import (
    ENV,
    ServerCredentials,
    credentials_path_for,
    load_or_create_credentials,
)

KEYS = ("access_key_id", "secret_access_key", "admin_user", "admin_password", "session_secret")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ENV.values():
        monkeypatch.delenv(var, raising=False)


def test_path_sits_next_to_the_database(tmp_path):
    assert credentials_path_for(tmp_path / "s.sqlite") == tmp_path / "s.sqlite.credentials.json"


def test_created_file_is_private_complete_and_reused(tmp_path):
    path = tmp_path / "deep" / "er" / "s.sqlite.credentials.json"  # parents are created
    first = load_or_create_credentials(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert set(stored) == set(KEYS)
    assert stored == {k: getattr(first, k) for k in KEYS}
    assert load_or_create_credentials(path) == first  # read back, not regenerated
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_generated_values_have_the_documented_shape_and_are_random():
    a = load_or_create_credentials(None)
    b = load_or_create_credentials(None)
    assert re.fullmatch(r"SPKI[A-Z0-9]{16}", a.access_key_id)
    assert a.admin_user == "admin"
    # 30 random bytes (240 bits) for the secret key, 18 (144 bits) for the admin password.
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", a.secret_access_key)
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", a.admin_password)
    assert re.fullmatch(r"[0-9a-f]{64}", a.session_secret)
    for key in ("access_key_id", "secret_access_key", "admin_password", "session_secret"):
        assert getattr(a, key) != getattr(b, key), key
    assert len({a.access_key_id, a.secret_access_key, a.admin_password, a.session_secret}) == 4


def test_in_memory_credentials_write_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    load_or_create_credentials(None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", list(ENV))
def test_environment_overrides_file_and_option_overrides_environment(tmp_path, monkeypatch, key):
    path = tmp_path / "c.json"
    stored = load_or_create_credentials(path)
    monkeypatch.setenv(ENV[key], "from-env")
    got = load_or_create_credentials(path)
    assert getattr(got, key) == "from-env"
    for other in KEYS:  # only that key changes
        if other != key:
            assert getattr(got, other) == getattr(stored, other)
    got = load_or_create_credentials(path, **{key: "from-option"})
    assert getattr(got, key) == "from-option"
    # An empty option or environment value does not count as set.
    monkeypatch.setenv(ENV[key], "")
    assert getattr(load_or_create_credentials(path, **{key: ""}), key) == getattr(stored, key)
    assert getattr(load_or_create_credentials(path, **{key: None}), key) == getattr(stored, key)
    # The file itself is never rewritten with the overrides.
    assert json.loads(path.read_text())[key] == getattr(stored, key)


def test_options_fill_in_memory_credentials():
    got = load_or_create_credentials(None, admin_user="alice", admin_password="pw")
    assert (got.admin_user, got.admin_password) == ("alice", "pw")


def test_unreadable_file_is_one_clear_error(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.json: not a readable credentials JSON") as exc:
        load_or_create_credentials(path)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_incomplete_file_names_the_missing_keys(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"access_key_id": "A", "secret_access_key": "S",
                                "admin_user": "u"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.json: credentials JSON lacks "
                                         r"\['admin_password', 'session_secret'\]"):
        load_or_create_credentials(path)


def test_hand_written_file_with_non_ascii_password(tmp_path):
    path = tmp_path / "c.json"
    values = {k: f"{k}-v" for k in KEYS} | {"admin_password": "pässwörd"}
    path.write_text(json.dumps(values, ensure_ascii=False), encoding="utf-8")
    assert load_or_create_credentials(path).admin_password == "pässwörd"


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    """A crash while writing (disk full, killed rename) leaves neither the credentials file
    nor a temporary file holding secrets."""
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    path = tmp_path / "c.json"
    with pytest.raises(OSError, match="disk full"):
        load_or_create_credentials(path)
    assert list(tmp_path.iterdir()) == []


def test_repr_hides_secrets():
    c = ServerCredentials("AKID", "SECRET1", "root", "PASSWORD1", "SESSION1")
    text = repr(c)
    assert "AKID" in text and "root" in text
    for secret in ("SECRET1", "PASSWORD1", "SESSION1"):
        assert secret not in text


def test_file_is_written_atomically_beside_its_final_name(tmp_path, monkeypatch):
    """The secrets go to a hidden temporary file in the same directory (so the rename is
    atomic, never a cross-device copy) that is renamed onto the final name."""
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    path = tmp_path / "c.json"
    load_or_create_credentials(path)
    [(src, dst)] = renames
    assert dst == path and src.parent == tmp_path
    assert src.name.startswith(".") and src != path
