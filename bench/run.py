"""Run the EncTalk server benchmarks and write bench/README.md.

    .venv/bin/python -m bench.run [--quick]

Starts ``run_server.py`` on 127.0.0.1 with a fresh data directory. It
measures relay throughput and delivery latency at rising rates, first
against a do-nothing relay to show the load generator's own ceiling. Then
it measures server memory per idle logged-in TLS connection, handshakes,
logins and resumes per second, and the client's cost to encrypt and
decrypt one text message. Every loop is bounded in count and time, and
nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import crypto_cost
from bench.null_relay import NullRelay
from bench.relay import ACK_EVERY, LoadGenerator, StepResult, connect_pairs
from bench.wire import BlockingPeer, client_context, register_with_device
from server.certs import generate_certificate

ROOT = Path(__file__).resolve().parent.parent
RATES = (250, 500, 1000, 1500, 2000, 2500, 3000, 4000)
P99_TARGET_MS = 10.0


def server_config(directory: Path, bcrypt_cost: int) -> Path:
    path = directory / "bench.toml"
    path.write_text(
        "\n".join(
            [
                f"bcrypt_cost = {bcrypt_cost}",
                "request_rate = 100000.0",
                "request_burst = 100000",
                "max_connections = 5000",
                "max_connections_per_address = 5000",
                # Every benchmark account registers from 127.0.0.1.
                "register_burst = 100000",
                "idle_timeout = 600.0",
                'log_level = "WARNING"',
                "",
            ]
        )
    )
    return path


class ServerProcess:
    """``run_server.py`` as a subprocess on 127.0.0.1 with a free port."""

    def __init__(self, directory: Path, bcrypt_cost: int) -> None:
        data_dir = directory / "data"
        command = [
            sys.executable,
            str(ROOT / "run_server.py"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--config",
            str(server_config(directory, bcrypt_cost)),
        ]
        self.log = (directory / "server.log").open("w+")
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=ROOT
        )
        self.port = self._read_port()

    def _read_port(self) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            match = re.search(r"listening on \S+:(\d+)", line)
            if match:
                # Keep draining stdout so the server never blocks on it.
                threading.Thread(target=self.process.stdout.read, daemon=True).start()
                return int(match.group(1))
        self.stop()
        raise RuntimeError("server did not report its port within 30 s")

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) if match else 0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def null_relay_context(directory: Path) -> Any:
    import ssl

    cert_pem, key_pem = generate_certificate("127.0.0.1")
    cert_file = directory / "null.crt"
    key_file = directory / "null.key"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert_file, key_file)
    return context


def relay_steps(
    port: int, rates: tuple[int, ...], duration: float, devices: int
) -> list[StepResult]:
    pairs = connect_pairs(port, client_context(), devices)
    generator = LoadGenerator(pairs)
    results = []
    try:
        for rate in rates:
            result = generator.run_step(rate, duration, drain=5.0)
            results.append(result)
            print("  ", result.row(), flush=True)
            if result.sent - result.delivered > result.sent // 100:
                break
    finally:
        generator.close()
    return results


def idle_connections(server: ServerProcess, count: int) -> dict[str, float]:
    """Open ``count`` logged-in idle connections; return memory and rates."""
    setup = BlockingPeer(server.port, client_context())
    token, device_id = register_with_device(setup, "idle" + os.urandom(3).hex())
    time.sleep(0.5)
    before = server.rss_kib()
    context = client_context()
    peers = []
    started = time.perf_counter()
    for _ in range(count):
        peer = BlockingPeer(server.port, context)
        peers.append(peer)
    handshake_seconds = time.perf_counter() - started
    resume_started = time.perf_counter()
    for peer in peers:
        peer.request("resume", token=_b(token), device_id=device_id)
    resume_seconds = time.perf_counter() - resume_started
    time.sleep(1.0)
    after = server.rss_kib()
    for peer in peers:
        peer.close()
    setup.close()
    return {
        "connections": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": (after - before) / count,
        "handshakes_per_s": count / handshake_seconds,
        "resumes_per_s": count / resume_seconds,
    }


def _b(token: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(token)


def logins_per_second(port: int, workers: int, per_worker: int) -> float:
    """Log in repeatedly from ``workers`` parallel connections."""
    setup = BlockingPeer(port, client_context())
    auth_key = os.urandom(32)
    from enctalk.crypto.keys import AccountIdentity

    name = "login" + os.urandom(3).hex()
    setup.request(
        "register",
        username=name,
        auth_key=auth_key,
        identity_key=AccountIdentity.generate().public_bytes(),
        backup=os.urandom(100),
    )
    setup.close()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            peer = BlockingPeer(port, client_context())
            for _ in range(per_worker):
                peer.request("login", username=name, auth_key=auth_key)
            peer.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"login benchmark failed: {errors[0]!r}")
    return workers * per_worker / elapsed


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def timed(label: str, action: Callable[[], Any]) -> Any:
    print(label, flush=True)
    return action()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short steps, fewer rates")
    parser.add_argument(
        "--duration", type=float, default=8.0, help="seconds of sending per rate step"
    )
    parser.add_argument(
        "--idle", type=int, default=2000, help="idle connections to open"
    )
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print results only, keep bench/README.md",
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rates = (250, 1000, 2000) if args.quick else RATES
    duration = 3.0 if args.quick else args.duration

    directory = Path(tempfile.mkdtemp(prefix="enctalk-bench-"))
    results: dict[str, Any] = {"machine": machine_description()}
    try:
        relay = NullRelay(null_relay_context(directory))
        port = relay.start()
        results["baseline"] = timed(
            "load generator against the do-nothing relay",
            lambda: relay_steps(port, (*rates, 6000, 8000), duration, 50),
        )
        relay.stop()

        server = ServerProcess(directory, bcrypt_cost=12)
        try:
            results["relay"] = timed(
                "relay through the EncTalk server",
                lambda: relay_steps(server.port, rates, duration, 50),
            )
            results["idle"] = timed(
                f"{args.idle} idle connections",
                lambda: idle_connections(server, args.idle),
            )
            results["logins_per_s"] = timed(
                "logins", lambda: logins_per_second(server.port, 4, 5)
            )
        finally:
            server.stop()
        results["crypto"] = timed("client crypto cost", crypto_cost.measure)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    report = render(results)
    print(report)
    if not args.no_write:
        (ROOT / "bench" / "README.md").write_text(report)


def render(results: dict[str, Any]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# EncTalk benchmarks",
        "",
        "Made by `.venv/bin/python -m bench.run`, which starts the server on",
        "127.0.0.1 and writes this file. Figures from one run; the machine is",
        "shared and noisy, so compare ratios within a run.",
        "",
        f"Run: {stamp} on {results['machine']}.",
        "",
        "## Relay: 50 devices in 25 pairs, 100-byte ciphertext envelopes",
        "",
        "Delivery latency is from writing `send` to reading the partner's",
        "`message` push; every message is committed to SQLite (WAL,",
        "`synchronous=FULL`, one fsync per batch of sends and acks) before the",
        "server acknowledges it or relays it. Each device sends `ack` after",
        f"every {ACK_EVERY} queue items, and since the sends are spread evenly",
        "the 50 devices do so nearly at once, so the server gets bursts of",
        "50 acks. In runs at 2,000/s the messages slower than 8 ms came in",
        "clusters, one per such burst.",
        "",
    ]
    lines += relay_table(
        "Load generator against a do-nothing relay", results["baseline"]
    )
    lines += relay_table("EncTalk server", results["relay"])
    held = [
        step
        for step in results["relay"]
        if step.sent == step.delivered
        and step.percentile(step.delivery_ms, 0.99) < P99_TARGET_MS
    ]
    best = max((step.offered_rate for step in held), default=0)
    # The highest rate below which no step missed the target either.
    steady = 0.0
    for step in results["relay"]:
        if step not in held:
            break
        steady = step.offered_rate
    lines += [
        f"Highest offered rate held with p99 delivery under {P99_TARGET_MS:g} ms "
        f"and nothing lost: **{best:g} messages/s**; every step up to "
        f"**{steady:g} messages/s** held it.",
        "",
    ]
    idle = results["idle"]
    lines += [
        "## Idle connections",
        "",
        "| connections | RSS before (KiB) | RSS after (KiB) | KiB per connection "
        "| TLS handshakes/s | resumes/s |",
        "|---|---|---|---|---|---|",
        f"| {idle['connections']} | {idle['rss_before_kib']} | {idle['rss_after_kib']} "
        f"| {idle['kib_per_connection']:.1f} | {idle['handshakes_per_s']:.0f} "
        f"| {idle['resumes_per_s']:.0f} |",
        "",
        "Handshakes are opened one after another from one client thread, so",
        "the rate includes the client's own TLS cost.",
        "",
        "## Logins",
        "",
        f"bcrypt cost 12, 4 parallel connections: "
        f"**{results['logins_per_s']:.1f} logins/s**.",
        "",
        "## Client cryptography, one text message",
        "",
        "| step | ms |",
        "|---|---|",
    ]
    for label, value in results["crypto"].items():
        lines.append(f"| {label} | {value:.3f} |")
    lines.append("")
    return "\n".join(lines)


def relay_table(title: str, steps: list[StepResult]) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| offered/s | delivered/s | lost | p50 ms | p99 ms | max ms | ack p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        row = step.row()
        lines.append(
            f"| {row['offered_per_s']} | {row['delivered_per_s']} | {row['lost']} "
            f"| {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} "
            f"| {row['ack_p99_ms']} |"
        )
    lines.append("")
    return lines


if __name__ == "__main__":
    main()
