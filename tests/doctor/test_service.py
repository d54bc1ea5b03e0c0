"""doctor's REST checks against the simulator: good key, bad key, unknown agent, overrides
disabled, a private agent's signed URL, and the service down."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doctor.simthread import SimThread
from voicebox.config import Config, Secret, with_changes
from voicebox.doctor.report import Check
from voicebox.doctor.service import check_service
from voicebox.simulator.server import SimConfig

KEY = "sk-good-key"


@pytest.fixture
def sim() -> Iterator[SimThread]:
    config = SimConfig(
        api_key=KEY,
        agent_ids=frozenset({"agent-ok", "agent-locked"}),
        overrides_disabled=frozenset({"agent-locked"}),
    )
    with SimThread(config) as s:
        yield s


def cfg(url: str, agent_id: str = "agent-ok", **changes: object) -> Config:
    return with_changes(Config(), **{"agent.api_base": url, "agent.agent_id": agent_id, **changes})


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_good_key_and_agent_pass(sim: SimThread) -> None:
    checks = by_name(check_service(cfg(sim.url), Secret(KEY), "$ELEVENLABS_API_KEY"))
    assert checks["api key"].status == "ok"
    assert "$ELEVENLABS_API_KEY" in checks["api key"].detail
    assert checks["agent"].status == "ok"
    assert "voicebox simulator (agent-ok)" in checks["agent"].detail
    assert checks["private agent"].status == "ok"
    assert checks["overrides"].status == "ok"
    assert all(c.status == "ok" for c in checks.values())


def test_bad_key_is_told_apart_as_401(sim: SimThread) -> None:
    checks = by_name(check_service(cfg(sim.url), Secret("sk-wrong"), "the systemd credential"))
    assert checks["api key"].status == "fail"
    assert "401" in checks["api key"].detail
    assert "sk-wrong" not in checks["api key"].line()
    assert checks["agent"].status == "warn"  # not checkable with a rejected key
    assert checks["api key"].fix


def test_unknown_agent_is_told_apart_as_404(sim: SimThread) -> None:
    checks = by_name(check_service(cfg(sim.url, "agent-typo"), Secret(KEY), "env"))
    assert checks["api key"].status == "ok"
    assert checks["agent"].status == "fail"
    assert "404" in checks["agent"].detail and "agent-typo" in checks["agent"].detail
    assert "agent_id" in checks["agent"].fix


def test_overrides_the_agent_does_not_allow_fail(sim: SimThread) -> None:
    c = cfg(
        sim.url,
        "agent-locked",
        **{"agent.overrides.first_message": "Hi", "agent.overrides.language": "de"},
    )
    checks = by_name(check_service(c, Secret(KEY), "env"))
    assert checks["agent"].status == "ok"
    assert checks["overrides"].status == "fail"
    assert "first_message" in checks["overrides"].detail
    assert "language" in checks["overrides"].detail
    assert "Security" in checks["overrides"].fix


def test_the_same_overrides_pass_on_an_agent_that_allows_them(sim: SimThread) -> None:
    c = cfg(sim.url, **{"agent.overrides.first_message": "", "agent.overrides.voice_id": "v"})
    check = by_name(check_service(c, Secret(KEY), "env"))["overrides"]
    assert check.status == "ok"
    assert check.detail == "enabled for this agent: first_message, voice_id"


def test_private_agent_needs_requires_auth_and_gets_a_signed_url() -> None:
    config = SimConfig(api_key=KEY, require_signature=True)
    with SimThread(config) as s:
        public = by_name(check_service(cfg(s.url), Secret(KEY), "env"))
        assert public["private agent"].status == "fail"
        assert "requires_auth" in public["private agent"].fix
        private = by_name(
            check_service(cfg(s.url, **{"agent.requires_auth": True}), Secret(KEY), "env")
        )
        assert private["signed url"].status == "ok"
        assert s.sim is not None and s.sim.signed_urls_issued == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_service_down_is_a_network_failure_not_a_key_problem() -> None:
    checks = check_service(cfg(f"http://127.0.0.1:{free_port()}"), Secret(KEY), "env")
    assert [c.name for c in checks] == ["service"]
    assert checks[0].status == "fail"
    assert "refused" in checks[0].detail


def test_no_agent_id_or_no_key() -> None:
    assert check_service(cfg("http://127.0.0.1:1", ""), Secret(KEY), "env")[0].status == "fail"
    no_key = check_service(cfg("http://127.0.0.1:1"), None, "")
    assert [(c.name, c.status) for c in no_key] == [("api key", "warn")]
    private = cfg("http://127.0.0.1:1", **{"agent.requires_auth": True})
    assert [(c.name, c.status) for c in check_service(private, None, "")] == [("api key", "fail")]


def test_a_redirect_is_not_followed_so_the_key_stays_home() -> None:
    import http.server
    import threading

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            if self.path.startswith("/elsewhere"):
                seen.append(self.headers.get("xi-api-key"))
                self.send_response(200)
                self.end_headers()
                return
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/elsewhere")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        checks = check_service(cfg(url), Secret(KEY), "env")
    finally:
        server.shutdown()
        server.server_close()
    assert seen == []
    assert [(c.name, c.status) for c in checks][0] == ("service", "warn")
    assert "HTTP 302" in checks[0].detail


def test_the_key_is_looked_for_where_the_daemon_looks_then_in_the_installed_credential(
    tmp_path: Path,
) -> None:
    from voicebox.doctor.host import Host
    from voicebox.doctor.run import find_key

    host = Host(root=tmp_path)
    base = Config()
    assert find_key(base, host, {}) == (None, "")
    host.credential.parent.mkdir(parents=True)
    host.credential.write_text("sk-installed\n")
    key, source = find_key(base, host, {})
    assert key is not None and key.reveal() == "sk-installed"
    assert source == "/etc/voicebox/credentials/elevenlabs_api_key"
    (tmp_path / "file").write_text("sk-file\n")
    with_file = with_changes(base, **{"agent.api_key_file": str(tmp_path / "file")})
    assert find_key(with_file, host, {})[1] == f"agent.api_key_file {tmp_path / 'file'}"
    key, source = find_key(with_file, host, {"ELEVENLABS_API_KEY": "sk-env"})
    assert (key.reveal() if key else None, source) == ("sk-env", "$ELEVENLABS_API_KEY")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "elevenlabs_api_key").write_text("sk-cred")
    env = {"ELEVENLABS_API_KEY": "sk-env", "CREDENTIALS_DIRECTORY": str(creds)}
    key, source = find_key(with_file, host, env)
    assert (key.reveal() if key else None, source) == ("sk-cred", "the systemd credential")
