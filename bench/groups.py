"""Run the group benchmarks and write their section of bench/README.md.

    .venv/bin/python -m bench.groups [--quick] [--no-write]

Measures, in one run:

1. Fan-out: one sender posts to a group of 30 and of 300 member devices
   (one account each) at rising rates, first against a do-nothing relay
   to show the load generator's own share, then against ``run_server.py``
   (bcrypt cost 4). See ``bench.group_fanout`` for how delivery latency
   is measured.
2. The sender's encryption cost per message for 1 to 300 member devices
   at the crypto layer, and a real client's ``send_group_text`` to 30 and
   300 devices, with the ``group_send`` frame size of each.
3. Server memory (VmRSS) before and with the 300 member devices
   connected, and its peak (VmHWM) after the fan-out.

Every step is bounded in messages and seconds, and nothing leaves
127.0.0.1.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import tempfile
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import group_crypto
from bench.group_crypto import ClientCost, SenderCost
from bench.group_fanout import (
    FanoutGenerator,
    FanoutStep,
    Group,
    connect_members,
    create_group,
    percentile,
    register_members,
    register_owner,
)
from bench.group_null_relay import NullRelayProcess
from bench.run import ServerProcess, machine_description
from bench.wire import client_context

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "bench" / "README.md"
SECTION_BEGIN = "<!-- bench.groups: begin -->"
SECTION_END = "<!-- bench.groups: end -->"

SMALL_GROUP = 30
LARGE_GROUP = 300
RATES: dict[int, tuple[int, ...]] = {
    SMALL_GROUP: (50, 100, 200, 300, 400),
    LARGE_GROUP: (5, 10, 20, 30, 40),
}
QUICK_RATES: dict[int, tuple[int, ...]] = {SMALL_GROUP: (50, 200), LARGE_GROUP: (5, 20)}
STEP_SECONDS = 5.0
MAX_STEP_SECONDS = 20.0
MAX_STEP_MESSAGES = 2000
DRAIN_SECONDS = 5.0
WARMUP_SECONDS = 1.0
# A group size stops climbing after a step that loses more than this
# share of deliveries or has a p99 delivery latency above STOP_P99_MS.
MAX_LOST_SHARE = 0.01
STOP_P99_MS = 1000.0
# The summary's target for p99 delivery latency to every member device.
P99_TARGET_MS = 100.0


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Return a memory field of /proc/PID/status (VmRSS, VmHWM) in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"{field}:\s+(\d+) kB", status)
    return int(match.group(1)) if match else 0


def load_average() -> float:
    """Return the 1-minute load average of the machine."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def fanout_steps(
    generator: FanoutGenerator,
    group: Group,
    rates: tuple[int, ...],
    duration: float,
) -> list[FanoutStep]:
    """Run a warm-up step, then ``rates`` in order until one passes a stop limit."""
    generator.run_step(
        group, rates[0], WARMUP_SECONDS, MAX_STEP_MESSAGES, DRAIN_SECONDS
    )
    results = []
    for rate in rates:
        messages = min(MAX_STEP_MESSAGES, round(rate * duration))
        step = generator.run_step(group, rate, duration, messages, DRAIN_SECONDS)
        results.append(step)
        print("  ", step.row(), flush=True)
        too_slow = percentile(step.delivery_ms, 0.99) > STOP_P99_MS
        if step.lost > step.sent * step.devices * MAX_LOST_SHARE or too_slow:
            break
    return results


def run_fanout(
    port: int,
    pid: int,
    rates: dict[int, tuple[int, ...]],
    duration: float,
    sizes: SenderCost,
) -> dict[str, Any]:
    """Register the accounts, make both groups, connect the members, run."""
    context = client_context()
    members = register_members(port, context, LARGE_GROUP)
    owner = register_owner(port, context)
    groups = {
        SMALL_GROUP: create_group(owner, "class of 30", members[:SMALL_GROUP]),
        LARGE_GROUP: create_group(owner, "class of 300", members),
    }
    rss_before = rss_kib(pid)
    connections = connect_members(port, context, members)
    rss_connected = rss_kib(pid)
    generator = FanoutGenerator(
        owner, connections, sizes.payload_size, sizes.prekey_envelope_size, pid
    )
    steps: dict[int, list[FanoutStep]] = {}
    try:
        for devices, group in groups.items():
            print(f"  group of {devices} member devices", flush=True)
            steps[devices] = fanout_steps(generator, group, rates[devices], duration)
    finally:
        generator.close()
    return {
        "steps": steps,
        "members": members,
        "rss_before_kib": rss_before,
        "rss_connected_kib": rss_connected,
        "rss_peak_kib": rss_kib(pid, "VmHWM"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two rates per group")
    parser.add_argument(
        "--duration",
        type=float,
        default=STEP_SECONDS,
        help=f"seconds of sending per rate step (at most {MAX_STEP_SECONDS:g})",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print results only, keep README.md"
    )
    args = parser.parse_args()
    if not 0 < args.duration <= MAX_STEP_SECONDS:
        parser.error(f"--duration must be above 0 and at most {MAX_STEP_SECONDS:g}")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rates = QUICK_RATES if args.quick else RATES

    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": machine_description(),
        "load_start": load_average(),
        "duration": args.duration,
    }
    print("sender encryption cost", flush=True)
    results["crypto"] = group_crypto.measure_sender_cost()
    sizes = results["crypto"][-1]

    print("fan-out through the do-nothing relay", flush=True)
    relay = NullRelayProcess()
    try:
        results["baseline"] = run_fanout(
            relay.port, relay.process.pid, rates, args.duration, sizes
        )
    finally:
        relay.stop()

    directory = Path(tempfile.mkdtemp(prefix="enctalk-bench-groups-"))
    try:
        server = ServerProcess(directory, bcrypt_cost=4)
        try:
            print("fan-out through the EncTalk server", flush=True)
            results["server"] = run_fanout(
                server.port,
                server.process.pid,
                rates,
                args.duration,
                sizes,
            )
            print("real client group sends", flush=True)
            names = [member.username for member in results["server"]["members"]]
            results["client"] = group_crypto.measure_client(
                server.port,
                directory,
                [names[:SMALL_GROUP], names[:LARGE_GROUP]],
            )
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    results["load_end"] = load_average()
    results["seconds"] = time.monotonic() - started

    section = render(results)
    print(section)
    if not args.no_write:
        write_section(section)


def write_section(section: str) -> None:
    """Replace this benchmark's section of README.md, or append it.

    NOTE: ``bench.run`` rewrites README.md whole and drops this section,
    so run ``bench.groups`` again after it.
    """
    text = README.read_text() if README.exists() else ""
    block = f"{SECTION_BEGIN}\n{section}{SECTION_END}\n"
    if SECTION_BEGIN in text and SECTION_END in text:
        head, rest = text.split(SECTION_BEGIN, 1)
        tail = rest.split(SECTION_END, 1)[1].lstrip("\n")
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    README.write_text(text)


def paragraph(text: str) -> list[str]:
    """Return ``text`` wrapped for the Markdown source, then a blank line."""
    return [*textwrap.wrap(text, width=72, break_on_hyphens=False), ""]


def render(results: dict[str, Any]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    server = results["server"]
    crypto: list[SenderCost] = results["crypto"]

    lines = ["## Groups: fan-out to 30 and 300 member devices", ""]
    lines += paragraph(
        "Made by `.venv/bin/python -m bench.groups`, which rewrites only this "
        "section. Figures from one run; the machine is shared and noisy, so "
        "compare ratios within the run."
    )
    lines += paragraph(
        f"Run: {stamp} on {results['machine']}. The 1-minute load average was "
        f"{results['load_start']:.2f} at the start and {results['load_end']:.2f} "
        "at the end, so other work shared the cores. The whole run took "
        f"{results['seconds']:.0f} s."
    )

    lines += paragraph(
        "One sender device posts `group_send` frames at a fixed rate to a "
        "group of 30 or of 300 accounts with one device each. The server "
        "commits each message before it relays it. Every member device has "
        "its own TLS connection, reads its `message` pushes and sends one "
        "cumulative `ack` per read. That is one ack per message, as the client "
        "sends them, until the server falls behind and several pushes arrive "
        "in one read (*acks/delivery* below 1). Payload and envelopes are "
        "random bytes of the real sizes measured below: a "
        f"{crypto[-1].payload_size}-byte sealed payload and "
        f"{crypto[-1].prekey_envelope_size}-byte envelopes. That is the "
        "PREKEY_MESSAGE form, which a sender keeps using to members who "
        "never reply."
    )
    lines += paragraph(
        "Delivery latency runs from writing `group_send` to reading the push "
        "on one member's connection, both stamped with `time.perf_counter` "
        "in one process. *Last* is the same to the last member device of a "
        "message, and *reply* is the time to the server's `ok`. One thread "
        "serves all connections, so a push waits while the pushes read "
        "before it in the same pass are handled. The do-nothing relay, a "
        "separate process that copies each envelope to its connection, "
        "shows that share."
    )
    lines += paragraph(
        f"Each step sends for {results['duration']:g} s and at most "
        f"{MAX_STEP_MESSAGES} messages after a {WARMUP_SECONDS:g}-second "
        f"warm-up, then waits up to {DRAIN_SECONDS:g} s for the last "
        "deliveries. A group size stops climbing after a step with a p99 "
        f"above {STOP_P99_MS:g} ms or more than {MAX_LOST_SHARE:.0%} lost."
    )

    lines += fanout_table(
        "EncTalk server (bcrypt cost 4, SQLite WAL, `synchronous=FULL`)",
        server["steps"],
        "server",
    )
    lines += fanout_table(
        "Load generator against the do-nothing relay",
        results["baseline"]["steps"],
        "relay",
    )

    lines += summary(server["steps"])
    lines += crypto_table(crypto)
    lines += client_table(results["client"])
    lines += memory_table(server, crypto)
    return "\n".join(lines)


def fanout_table(
    title: str, steps: dict[int, list[FanoutStep]], relay: str
) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| devices | offered msg/s | sent msg/s | completed msg/s | deliveries/s "
        "| lost | p50 ms | p99 ms | max ms | last p99 ms | reply p99 ms "
        f"| acks/delivery | {relay} CPU % | generator CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for group_steps in steps.values():
        for step in group_steps:
            row = step.row()
            lines.append(
                f"| {row['devices']} | {row['offered_per_s']} | {row['sent_per_s']} "
                f"| {row['completed_per_s']} | {row['deliveries_per_s']} "
                f"| {row['lost']} | {row['p50_ms']} | {row['p99_ms']} "
                f"| {row['max_ms']} | {row['last_p99_ms']} | {row['reply_p99_ms']} "
                f"| {row['acks_per_delivery']} | {row['server_cpu_pct']} "
                f"| {row['generator_cpu_pct']} |"
            )
    lines.append("")
    lines += paragraph(
        "*Sent* is over the sending time. *Completed* (messages that reached "
        "every member device) and *deliveries* are over the step up to the "
        "last delivery. CPU % is of one core, over the whole step."
    )
    return lines


def summary(steps: dict[int, list[FanoutStep]]) -> list[str]:
    lines = []
    for devices, group_steps in steps.items():
        within_target = [
            step
            for step in group_steps
            if step.lost == 0 and percentile(step.delivery_ms, 0.99) < P99_TARGET_MS
        ]
        if not within_target:
            lines.append(
                f"- {devices} devices: no step held p99 under {P99_TARGET_MS:g} ms "
                "with nothing lost."
            )
            continue
        best = max(within_target, key=lambda step: step.offered_rate)
        lines.append(
            f"- {devices} devices: up to **{best.offered_rate:g} messages/s** "
            f"({best.row()['deliveries_per_s']} deliveries/s) with nothing lost "
            f"and p99 delivery under {P99_TARGET_MS:g} ms."
        )
    return [
        "Highest offered rate held by the server:",
        "",
        *lines,
        "",
    ]


def crypto_table(costs: list[SenderCost]) -> list[str]:
    lines = ["### Sender encryption cost per group message", ""]
    lines += paragraph(
        "Crypto layer only, with the calls that `enctalk.client.messaging` "
        "makes: `seal_payload` once, then per member device its associated "
        "data and `encrypt_for_device`. *First* runs X3DH to every device. "
        "*Later* uses the sessions it made, still in PREKEY_MESSAGE form, and "
        "*after replies* is the same once every member answered over its "
        "session. The frame is one `group_send` with those real envelopes "
        "and 11-character usernames."
    )
    lines += [
        "| member devices | first ms | first ms/device | later ms | later ms/device "
        "| after replies ms | envelope bytes (prekey / ratchet) "
        "| group_send frame bytes (prekey / ratchet) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cost in costs:
        lines.append(
            f"| {cost.devices} | {cost.first_ms:.2f} "
            f"| {cost.first_ms / cost.devices:.3f} | {cost.steady_ms:.3f} "
            f"| {cost.steady_ms / cost.devices:.4f} | {cost.replied_ms:.3f} "
            f"| {cost.prekey_envelope_size} / {cost.ratchet_envelope_size} "
            f"| {cost.prekey_frame_size} / {cost.ratchet_frame_size} |"
        )
    first, last = costs[0], costs[-1]
    lines.append("")
    lines += paragraph(
        f"From {first.devices} to {last.devices} member devices the later-send "
        f"cost grows {last.steady_ms / first.steady_ms:.0f}-fold and the frame "
        f"{last.prekey_frame_size / first.prekey_frame_size:.0f}-fold. The "
        "PREKEY_MESSAGE frame is "
        f"{last.prekey_frame_size / last.ratchet_frame_size:.1f} times the "
        "ratchet-form frame."
    )
    return lines


def client_table(costs: list[ClientCost]) -> list[str]:
    lines = ["### Real client: `send_group_text` to a group", ""]
    lines += paragraph(
        "A new `enctalk.client.core.Client` per group, in this process, "
        "against the same server, with the members offline. *Add* is one "
        "`group_add`. *First send* fetches every member's bundles and runs "
        "X3DH to each device. *Later* is the median of "
        f"{group_crypto.CLIENT_SENDS} sends after it, from the call until "
        "the server's reply is stored. Of that, *request* is the `group_send` "
        "round trip, in which the server checks, commits and queues the "
        "message. The client also saves its vault *saves* times per send, "
        "and one save alone takes *save* ms."
    )
    lines += paragraph(
        "Unlike the benchmark's wire clients, the client's socket leaves "
        "Nagle's algorithm on (no `TCP_NODELAY`), so the request time of a "
        "frame that takes more than one write can include a delayed TCP "
        "acknowledgement."
    )
    lines += [
        "| member devices | add ms | first send ms | later send ms | request ms "
        "| saves | save ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for cost in costs:
        lines.append(
            f"| {cost.devices} | {cost.add_ms:.1f} | {cost.first_send_ms:.1f} "
            f"| {cost.send_ms:.1f} | {cost.request_ms:.1f} | {cost.saves:g} "
            f"| {cost.save_ms:.1f} |"
        )
    lines.append("")
    return lines


def memory_table(server: dict[str, Any], costs: list[SenderCost]) -> list[str]:
    by_size = {cost.devices: cost for cost in costs}
    frame_sizes = paragraph(
        "One `group_send` frame, with PREKEY_MESSAGE envelopes (ratchet form "
        "in brackets): "
        + ", ".join(
            f"{by_size[devices].prekey_frame_size} bytes "
            f"({by_size[devices].ratchet_frame_size}) to {devices} devices"
            for devices in (SMALL_GROUP, LARGE_GROUP)
        )
        + "."
    )
    before = server["rss_before_kib"]
    connected = server["rss_connected_kib"]
    per_device = (connected - before) / LARGE_GROUP
    return [
        "### Server memory and frame size",
        "",
        "| state | KiB |",
        "|---|---|",
        f"| VmRSS, accounts and groups made, no member connected | {before} |",
        f"| VmRSS, {LARGE_GROUP} member devices connected | {connected} |",
        f"| VmHWM (peak) after the fan-out steps | {server['rss_peak_kib']} |",
        "",
        f"About {per_device:.1f} KiB per connected member device.",
        "",
        *frame_sizes,
    ]


if __name__ == "__main__":
    main()
