"""Privacy mode local fails closed: remote endpoints are refused before any socket or name lookup."""
import json
import socket
import urllib.request

import pytest
from fake_llm_server import FakeLLMServer

from collab.privacy import (AuditLog, NetworkGuard, PrivacyError, check_endpoint, check_ray_address,
                            is_local_endpoint, local_only_environment)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1",
                                 "http://127.5.6.7/v1", "unix:///tmp/llm.sock"])
def test_loopback_endpoints_are_local(url):
    assert is_local_endpoint(url)
    check_endpoint(url, "local")


@pytest.mark.parametrize("url", ["https://api.openai.com/v1", "http://10.0.0.5:8000/v1", "http://192.168.1.2/v1",
                                 "http://localhost.evil.com/v1", "http://127.0.0.1.nip.io/v1", "ftp://127.0.0.1/"])
def test_other_endpoints_are_refused_in_one_line(url):
    with pytest.raises(PrivacyError, match="privacy mode local refuses the LLM endpoint") as e:
        check_endpoint(url, "local")
    assert "\n" not in str(e.value)
    check_endpoint(url, "off")


def test_the_endpoint_check_never_looks_a_name_up(monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("looked a name up")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    monkeypatch.setattr(socket, "gethostbyname", no_lookup)
    with pytest.raises(PrivacyError):
        check_endpoint("https://api.example.com/v1", "local")


def test_ray_addresses():
    check_ray_address(None, "local")
    check_ray_address("127.0.0.1:6379", "local")
    check_ray_address("ray://localhost:10001", "local")
    for address in ("auto", "10.1.1.1:6379", "ray://head.cluster:10001"):
        with pytest.raises(PrivacyError, match="Ray address"):
            check_ray_address(address, "local")
        check_ray_address(address, "off")


def test_the_guard_refuses_remote_connections_and_lookups_and_lets_loopback_through():
    with FakeLLMServer() as server, NetworkGuard() as guard:
        with urllib.request.urlopen(server.base_url.replace("/v1", "/v1/models"), timeout=5) as response:
            assert json.load(response)["data"][0]["id"] == "fake-llm"
        with pytest.raises(PrivacyError):
            socket.getaddrinfo("example.com", 443)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(PrivacyError):
            sock.connect(("93.184.216.34", 443))
        sock.close()
    assert guard.refused == ["name lookup of 'example.com'", "('93.184.216.34', 443)"]
    assert socket.getaddrinfo.__name__ == "getaddrinfo"  # restored


def test_local_only_environment_turns_hubs_off_and_drops_proxies(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    local_only_environment()
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    assert "HTTPS_PROXY" not in os.environ


def test_the_audit_log_appends_one_line_per_request(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.record(destination="http://127.0.0.1:1/v1", model="m", pair_id="p1", cached=False)
    log.record(destination="http://127.0.0.1:1/v1", model="m", pair_id="p2", cached=True)
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(r["pair"], r["cached"]) for r in lines] == [("p1", False), ("p2", True)]


def test_a_unix_socket_endpoint_works_under_the_guard(tmp_path):
    import asyncio

    from fake_llm_server import answer

    from collab.data import Mention, Pair
    from collab.llm import LLMRequest, OpenAIChatLLM, OpenAISettings

    pair = Pair("p1", "The fire caused smoke.", Mention("fire", 4, 8), Mention("smoke", 16, 21))
    request = LLMRequest(pair, [{"role": "user", "content": "?"}], ["no_relation"], "no_relation", "t@1")
    with FakeLLMServer([answer("no_relation")], unix_socket=str(tmp_path / "llm.sock")) as server:
        check_endpoint(server.base_url, "local")
        with NetworkGuard() as guard:
            llm = OpenAIChatLLM(OpenAISettings(server.base_url, server.model, retries=0, trust_env=False))

            async def ask():
                try:
                    return await llm.answer(request)
                finally:
                    await llm.close()

            reply = asyncio.run(ask())
    assert reply.relation == "no_relation" and guard.refused == []
    assert server.requests[0]["messages"] == [{"role": "user", "content": "?"}]
