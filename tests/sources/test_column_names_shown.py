"""A file without the prompt column is refused naming the columns found only when they look like column names:
a credentials file dropped (or linked) under a prompt file's name never has its first line repeated."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pref_assets.core.prompts import PromptSourceError
from pref_assets.core.watch import FolderCursor
from pref_assets.sources.files import read_files
from pref_assets.sources.folder import scan_folder

SECRET = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUvWx"
REFUSED = "no column 'instruction' (or 'messages' for chat prompts); the header row does not look like column names"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("creds.csv", f"OPENAI_API_KEY={SECRET}\nHF_TOKEN=hf_x\n"),
        ("creds.csv", f"{SECRET},hunter2\n1,2\n"),
        ("aws.csv", f"[default]\naws_secret_access_key = {SECRET}\n"),
        ("keys.jsonl", json.dumps({SECRET: "openai", "note": "do not share"}) + "\n"),
        ("keys.csv", ",".join(f"col{i}" for i in range(40)) + f"\n{SECRET}\n"),
    ],
    ids=["env-file", "key-in-header", "ini-file", "json-key", "too-many-columns"],
)
def test_a_header_that_is_not_column_names_is_never_repeated(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PromptSourceError) as info:
        read_files([str(path)], {})
    assert REFUSED in str(info.value) and SECRET not in str(info.value) and SECRET[:12] not in str(info.value)


def test_a_linked_credentials_file_in_the_watched_folder_is_skipped_without_its_content(tmp_path: Path) -> None:
    secret_file = tmp_path / "outside" / "credentials"
    secret_file.parent.mkdir()
    secret_file.write_text(f"{SECRET}\nsecond line\n")
    folder = tmp_path / "watched"
    folder.mkdir()
    (folder / "creds.csv").symlink_to(secret_file)
    scan = scan_folder(folder, {}, 10, cursor=FolderCursor(), min_file_age_s=0.0, now=time.time() + 60)
    assert scan.changes == () and len(scan.problems) == 1
    assert SECRET not in scan.problems[0] and "creds.csv" in scan.problems[0]


def test_names_are_listed_when_they_look_like_names_and_only_then(tmp_path: Path) -> None:
    names, key = tmp_path / "prompts.csv", tmp_path / "key.csv"
    names.write_text("question,topic 2,source.url\nq1,t,u\n")
    key.write_text(f"question,{SECRET}\nq1,t\n")
    messages = []
    for path in (names, key):
        with pytest.raises(PromptSourceError) as info:
            read_files([str(path)], {})
        messages.append(str(info.value))
    assert "columns present: ['question', 'source.url', 'topic 2']" in messages[0] and REFUSED not in messages[0]
    assert REFUSED in messages[1] and "question" not in messages[1].split(";", 1)[1] and SECRET not in messages[1]
