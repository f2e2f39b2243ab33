import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from collab.llm_cache import FILENAME, SCHEMA_VERSION, ReplyCache

REPO = Path(__file__).resolve().parents[1]

MODEL = "qwen2.5-7b-instruct"
TEMPLATE = "llm/guide.v1@abc123"
MESSAGES = [{"role": "system", "content": "Extract relations."}, {"role": "user", "content": "The fire caused smoke."}]
PARAMS = {"temperature": 0.0, "max_tokens": 64, "seed": 0}
RESPONSE = {"choices": [{"message": {"role": "assistant", "content": "Cause-Effect(e1,e2)"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5}}


def store(cache, key, response=RESPONSE):
    cache.put(key, model=MODEL, template=TEMPLATE, request={"messages": MESSAGES, **PARAMS}, response=response)


def test_key_depends_on_every_part_but_not_on_dict_order():
    base = ReplyCache.key(MODEL, TEMPLATE, MESSAGES, PARAMS)
    assert len(base) == 64
    variants = [
        ReplyCache.key("other-model", TEMPLATE, MESSAGES, PARAMS),
        ReplyCache.key(MODEL, "llm/guide.v2@abc123", MESSAGES, PARAMS),
        ReplyCache.key(MODEL, TEMPLATE, MESSAGES[:1], PARAMS),
        ReplyCache.key(MODEL, TEMPLATE, [MESSAGES[0], {"role": "user", "content": "The fire caused ash."}], PARAMS),
        ReplyCache.key(MODEL, TEMPLATE, MESSAGES, {**PARAMS, "temperature": 0.7}),
        ReplyCache.key(MODEL, TEMPLATE, MESSAGES, {**PARAMS, "top_p": 0.9}),
    ]
    assert len({base, *variants}) == len(variants) + 1

    reordered_messages = [dict(reversed(list(m.items()))) for m in MESSAGES]
    reordered_params = dict(reversed(list(PARAMS.items())))
    assert ReplyCache.key(MODEL, TEMPLATE, reordered_messages, reordered_params) == base


def test_put_get_round_trip_counts_hits_and_misses(tmp_path):
    with ReplyCache(tmp_path / "deep" / "dir" / "replies.sqlite") as cache:
        key = ReplyCache.key(MODEL, TEMPLATE, MESSAGES, PARAMS)
        assert cache.get(key) is None
        store(cache, key)
        assert cache.get(key) == RESPONSE
        assert cache.get(key) == RESPONSE
        assert cache.get("no-such-key") is None
        assert (cache.hits, cache.misses) == (2, 2)
        assert cache.stats() == {"hits": 2, "misses": 2, "entries": 1, "path": str(cache.path)}
        assert cache.path == tmp_path / "deep" / "dir" / "replies.sqlite"

        store(cache, key, response={"replaced": True})  # same key: replaced, not duplicated
        assert cache.get(key) == {"replaced": True}
        assert cache.stats()["entries"] == 1


def test_entries_survive_close_and_reopen(tmp_path):
    path = tmp_path / "replies.sqlite"
    key = ReplyCache.key(MODEL, TEMPLATE, MESSAGES, PARAMS)
    cache = ReplyCache(path)
    store(cache, key)
    cache.close()
    cache.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed"):
        cache.get(key)

    with ReplyCache(path) as reopened:
        assert reopened.get(key) == RESPONSE
        assert reopened.stats()["entries"] == 1
        row = reopened._conn.execute("SELECT model, template, request FROM replies WHERE key = ?", (key,)).fetchone()
        assert row[:2] == (MODEL, TEMPLATE) and '"temperature":0.0' in row[2]


def test_put_is_durable_without_close(tmp_path):
    """A reply must be on disk the moment put returns: a second connection sees it with the first never closed."""
    path = tmp_path / "replies.sqlite"
    cache = ReplyCache(path)
    store(cache, "k")
    with ReplyCache(path) as other:
        assert other.get("k") == RESPONSE
    cache.close()


def test_another_process_can_write_while_the_file_is_open(tmp_path):
    path = tmp_path / "replies.sqlite"
    with ReplyCache(path) as cache:
        store(cache, "mine")
        assert cache.get("theirs") is None
        script = (
            "import sys; from collab.llm_cache import ReplyCache\n"
            "with ReplyCache(sys.argv[1]) as c:\n"
            "    assert c.get('mine') is not None\n"
            "    c.put('theirs', model='m', template='t', request={}, response={'from': 'child'})\n"
        )
        result = subprocess.run([sys.executable, "-c", script, str(path)], check=False, cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert cache.get("theirs") == {"from": "child"}
        assert cache.stats()["entries"] == 2


def test_a_reply_survives_kill_9_right_after_put(tmp_path):
    path = tmp_path / "replies.sqlite"
    script = (
        "import os, signal, sys; from collab.llm_cache import ReplyCache\n"
        "c = ReplyCache(sys.argv[1])\n"
        "c.put('paid', model='m', template='t', request={}, response={'ok': 1})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], check=False, cwd=REPO, capture_output=True,
                            timeout=60)
    assert result.returncode == -9, result.stderr
    with ReplyCache(path) as cache:
        assert cache.get("paid") == {"ok": 1}


def test_threads_share_one_cache(tmp_path):
    with ReplyCache(tmp_path / "replies.sqlite") as cache:
        def work(n):
            for i in range(20):
                store(cache, f"{n}-{i}", response={"n": n, "i": i})
                assert cache.get(f"{n}-{i}") == {"n": n, "i": i}

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert cache.stats()["entries"] == 80
        assert cache.hits == 80


def test_corrupt_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "replies.sqlite"
    path.write_bytes(b"this is not a sqlite database, just some bytes " * 100)
    with pytest.raises(ValueError) as info:
        ReplyCache(path)
    message = str(info.value)
    assert str(path) in message and "delete" in message and "\n" not in message


def test_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "replies.sqlite"
    ReplyCache(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ValueError, match="newer"):
        ReplyCache(path)


def test_open_puts_the_file_under_the_llm_subdir(tmp_path):
    with ReplyCache.open(tmp_path / "cache") as cache:
        assert cache.path == tmp_path / "cache" / "llm" / FILENAME
        assert cache.path.is_file()
