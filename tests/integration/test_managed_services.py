"""Redis and PostgreSQL as platforms hand them out: a rediss:// Redis with a certificate from a
private CA (verified with APEX_REDIS_CA_FILE, or not at all with APEX_REDIS_TLS_VERIFY=0), an
evicting maxmemory-policy refused at boot, and PostgreSQL pools sized by the settings. Each Redis
here is a private redis-server started by the test on a free port."""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from redis import Redis
from rq import Queue

from apex.api.runtime import build_runtime
from apex.redischeck import check, check_at_boot
from config import Settings, load_settings
from launcher.embedded_redis import free_port
from tests.conftest import database_kinds, fresh_database
from tests.integration.conftest import ROOT, env_for, wait_for
from tests.integration.egress import PrivateCa, private_ca
from workers import context

REDIS_SERVER = shutil.which("redis-server")  # Debian's is built with TLS (libssl)


@dataclass
class PrivateRedis:
    port: int
    tls: bool

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCa:
    return private_ca(tmp_path_factory.mktemp("redis-ca"), ["127.0.0.1", "localhost"])


@pytest.fixture(scope="module")
def start_redis(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PrivateRedis]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, tls: PrivateCa | None = None) -> PrivateRedis:
        assert REDIS_SERVER is not None, "these tests start redis-server: install it"
        port = free_port(0)
        folder = tmp_path_factory.mktemp("redis")
        listen = ["--port", str(port)]
        if tls is not None:
            listen = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no",
                      "--tls-cert-file", str(tls.cert_file), "--tls-key-file", str(tls.key_file),
                      "--tls-ca-cert-file", str(tls.ca_file)]  # fmt: skip
        proc = subprocess.Popen(
            [str(REDIS_SERVER), "--bind", "127.0.0.1", *listen, "--dir", str(folder),
             "--save", "", "--appendonly", "no", *args],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        started.append(proc)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return proc.poll() is not None  # exited: fail below, not by waiting
            return True

        wait_for(listening, timeout=10, interval=0.05)
        assert proc.poll() is None, "redis-server exited"
        return PrivateRedis(port, tls is not None)

    yield start
    for proc in started:
        proc.terminate()
    for proc in started:
        proc.wait(10)


@pytest.fixture(scope="module")
def tls_redis(start_redis: Callable[..., PrivateRedis], ca: PrivateCa) -> PrivateRedis:
    return start_redis(tls=ca)


def _run_worker_burst(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _boot_failure(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "tls_env",
    [{"APEX_REDIS_TLS_VERIFY": "1"}, {"APEX_REDIS_TLS_VERIFY": "0"}],
    ids=["verified-with-the-ca-file", "not-verified"],
)
def test_worker_scheduler_and_web_work_over_tls(
    settings: Settings,
    tls_redis: PrivateRedis,
    ca: PrivateCa,
    processes: Callable[..., subprocess.Popen[bytes]],
    tls_env: dict[str, str],
) -> None:
    if tls_env["APEX_REDIS_TLS_VERIFY"] == "1":
        tls_env = {**tls_env, "APEX_REDIS_CA_FILE": str(ca.ca_file)}
    env = {**env_for(settings), "REDIS_URL": tls_redis.url, **tls_env}
    loaded = load_settings(env)
    assert loaded.redis_url.startswith("rediss://")

    # The web: its runtime's client and the boot check go over TLS.
    web = build_runtime(replace(settings, redis_url=loaded.redis_url))
    assert web.redis.ping() is True
    check_at_boot(loaded.redis_url, "web")
    web.redis.flushdb()

    # The worker: a real process runs a job it finds in the TLS Redis.
    job = Queue("maintenance", connection=web.redis).enqueue("builtins.len", "abcd")
    done = _run_worker_burst(env)
    assert done.returncode == 0, done.stderr
    job.refresh()
    assert job.get_status() == "finished" and job.return_value() == 4

    # The scheduler: registers its periodic jobs there.
    processes("workers.scheduled", **{"REDIS_URL": tls_redis.url, **tls_env})
    wait_for(lambda: web.redis.zcard("rq:scheduler:scheduled_jobs") > 0, timeout=30)
    web.redis.close()
    web.engine.dispose()


def test_an_unverified_certificate_stops_the_boot_with_one_line(
    settings: Settings, tls_redis: PrivateRedis
) -> None:
    env = {**env_for(settings), "REDIS_URL": tls_redis.url}  # verify (default), no CA file
    done = _boot_failure("workers", env)
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("worker: Redis's TLS certificate did not verify (")
    assert "APEX_REDIS_CA_FILE" in lines[0] and "APEX_REDIS_TLS_VERIFY=0" in lines[0]
    scheduler = _boot_failure("workers.scheduled", env)
    assert scheduler.returncode != 0
    lines = scheduler.stderr.splitlines()
    assert len(lines) == 1 and "Redis's TLS certificate did not verify" in lines[0]
    with pytest.raises(SystemExit, match=r"^web: Redis's TLS certificate did not verify"):
        check_at_boot(tls_redis.url, "web")


@pytest.fixture(scope="module")
def evicting_redis(start_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    return start_redis("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")


def test_an_evicting_redis_stops_worker_scheduler_and_web_with_one_line(
    settings: Settings, evicting_redis: PrivateRedis
) -> None:
    env = {**env_for(settings), "REDIS_URL": evicting_redis.url}
    for module, prefix in (("workers", "worker: "), ("workers.scheduled", "")):
        done = _boot_failure(module, env)
        assert done.returncode != 0
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(prefix)
        assert "maxmemory-policy is allkeys-lru" in lines[0]
        assert "heroku redis:maxmemory --policy noeviction" in lines[0]
    with pytest.raises(SystemExit, match=r"^web: Redis's maxmemory-policy is allkeys-lru"):
        check_at_boot(evicting_redis.url, "web")


def test_a_redis_hiding_config_is_read_through_info(
    start_redis: Callable[..., PrivateRedis],
) -> None:
    hidden = start_redis("--maxmemory-policy", "volatile-ttl", "--rename-command", "CONFIG", "")
    with pytest.raises(SystemExit, match="maxmemory-policy is volatile-ttl"):
        check_at_boot(hidden.url, "worker")
    fit = start_redis("--rename-command", "CONFIG", "")  # noeviction, Redis's default
    check_at_boot(fit.url, "worker")


def test_a_policy_that_cannot_be_read_is_a_warning_and_the_boot_goes_on(
    start_redis: Callable[..., PrivateRedis], caplog: pytest.LogCaptureFixture
) -> None:
    blind = start_redis(
        "--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", "",
        "--rename-command", "INFO", "",
    )  # fmt: skip
    redis = Redis.from_url(blind.url)
    with caplog.at_level(logging.WARNING, logger="apex.redis"):
        check(redis)
    redis.close()
    assert "maxmemory-policy cannot be read" in caplog.text


def test_an_unreachable_redis_is_a_warning_and_the_boot_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{free_port(0)}/0"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="apex.redis"):
        check_at_boot(url, "worker")
    assert "Redis not checked at boot" in caplog.text


def test_a_redis_refusing_the_password_stops_the_boot(
    start_redis: Callable[..., PrivateRedis],
) -> None:
    locked = start_redis("--requirepass", "right-password")
    url = locked.url.replace("redis://", "redis://:wrong-password@")
    with pytest.raises(SystemExit, match=r"^worker: Redis refused the credentials in REDIS_URL"):
        check_at_boot(url, "worker")
    check_at_boot(locked.url.replace("redis://", "redis://:right-password@"), "worker")


@pytest.mark.parametrize("kind", [k for k in database_kinds() if k == "postgres"])
def test_pool_settings_size_the_web_and_worker_pools(
    settings: Settings, kind: str, tmp_path: Path
) -> None:
    with fresh_database(kind, tmp_path) as url:
        _check_pools(replace(settings, database_url=url, db_pool_size=2, db_max_overflow=1))


def _check_pools(sized: Settings) -> None:
    web = build_runtime(sized).engine
    worker = context.build(sized).engine
    for engine in (web, worker):
        held = [engine.connect() for _ in range(3)]
        pids = {c.execute(sa.text("SELECT pg_backend_pid()")).scalar() for c in held}
        assert len(pids) == 3
        assert (engine.pool.size(), engine.pool.checkedout(), engine.pool.overflow()) == (2, 3, 1)
        for conn in held:
            conn.close()
        with engine.connect() as conn:
            count = conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                {"pids": list(pids)},
            ).scalar()
        assert count == 2  # the overflow connection closed on return; the pool keeps 2
        engine.dispose()


def test_a_stop_during_the_boot_check_is_a_clean_stop(
    settings: Settings, processes: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    # A Redis that takes connections and never answers: the check waits on its reply.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(30)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        worker = processes("workers", REDIS_URL=url)
        first, _ = silent.accept()  # the boot check's connection: nothing else talks before it
        time.sleep(0.5)  # its command sent, waiting for the reply
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        first.close()
    log = (tmp_path / "workers-0.log").read_text()
    assert "stop requested during the Redis boot check" in log and "worker stopped" in log
