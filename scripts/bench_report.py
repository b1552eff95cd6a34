"""Turn the benchmark figures (JSON) into the README's Markdown tables and PNG plots.

    python scripts/bench_report.py FIGURES_DIR PLOTS_DIR
    python scripts/bench_report.py --soak FIGURES_DIR PLOTS_DIR

Reads what tests/bench_ha.py and scripts/bench_privacy.py wrote into FIGURES_DIR, prints the
tables with the targets they are judged against, and writes one plot per trade-off. With --soak,
the soak's figures (tests/bench_soak.py, also while it still runs) and its curve, soak.png.
"""

from __future__ import annotations

from datetime import UTC, datetime
import json
import math
import os
from pathlib import Path
import platform
import sys
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

# Targets of the benchmark issue, next to which the figures are printed.
V1_RATIO_TARGET = 0.80
OWN_V2_TARGET_US = 50.0
HA_RATE_TARGET = 1000.0
P99_TARGET_MS = 25.0
STALL_TARGET_MS = 2.0
ATTACK_STALL_TARGET_MS = 10.0
ROWS_TARGET = 3000
DISPLAY_SIGMA_TARGET = 0.3


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    """Return one benchmark's figures, or None when it did not run."""
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _mark(ok: bool) -> str:
    """Say whether a target is met."""
    return "met" if ok else "**missed**"


def machine() -> str:
    """Describe this machine in one line."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def ingestion_table(figures: dict[str, Any]) -> list[str]:
    """Return the ingestion rows."""
    rsa_rate = figures["raw_rsa_oaep_per_s"]
    v2_loop, v1_loop = figures["v2_on_loop_ms"], figures["v1_on_loop_ms"]
    return [
        "| Ingestion (one Home Assistant, one core) | Figure | Target | |",
        "|---|---|---|---|",
        f"| raw RSA-2048 OAEP decrypt, same run | {rsa_rate:,.0f} /s | – | |",
        f"| raw AES-256-GCM decrypt, same run | {figures['raw_aes_gcm_per_s']:,.0f} /s | – | |",
        f"| v1 messages through Home Assistant, every entity current "
        f"| {figures['v1_per_s']:,.0f} /s = {figures['v1_ratio']:.0%} of raw RSA "
        f"| ≥ {V1_RATIO_TARGET:.0%} | {_mark(figures['v1_ratio'] >= V1_RATIO_TARGET)} |",
        f"| v2 messages through Home Assistant, every entity current "
        f"| {figures['v2_per_s']:,.0f} /s | ≥ {HA_RATE_TARGET:,.0f} /s "
        f"| {_mark(figures['v2_per_s'] >= HA_RATE_TARGET)} |",
        f"| integration's own cost per v2 message (parse, counter, AES-GCM, validate, "
        f"severity, anomaly) | {figures['own_v2_us']:.1f} µs | ≤ {OWN_V2_TARGET_US:.0f} µs "
        f"| {_mark(figures['own_v2_us'] <= OWN_V2_TARGET_US)} |",
        f"| integration's own cost per v1 message (parse, RSA-OAEP, validate) "
        f"| {figures['own_v1_us']:.0f} µs | – | |",
        f"| the integration's work on the event loop per v2 / v1 message "
        f"(p99, max) | {v2_loop['p99']:.2f}, {v2_loop['max']:.2f} / "
        f"{v1_loop['p99']:.2f}, {v1_loop['max']:.2f} ms | ≤ {STALL_TARGET_MS:.0f} ms "
        f"| {_mark(max(v2_loop['max'], v1_loop['max']) <= STALL_TARGET_MS)} |",
        f"| longest event-loop stall from anything while ingesting v2 / v1 "
        f"(garbage collection aside) | {figures['v2_longest_stall_ms']:.1f} / "
        f"{figures['v1_longest_stall_ms']:.1f} ms | – | |",
        f"| longest garbage-collection pause of the process | "
        f"{figures['longest_gc_pause_ms']:.0f} ms | – | |",
    ]


def latency_table(figures: dict[str, Any]) -> list[str]:
    """Return the end-to-end latency rows."""
    lines = [
        "| Publish → reading applied, through Mosquitto (v2) | Delivered / sent | p50 | p95 | p99 "
        "| Target |",
        "|---|---|---|---|---|---|",
    ]
    sizes = figures["sizes"]
    largest = max(sizes, key=int)
    for size, row in sorted(sizes.items(), key=lambda item: int(item[0])):
        target = ""
        if size == largest:
            target = f"p99 ≤ {P99_TARGET_MS:.0f} ms: {_mark(row['p99'] <= P99_TARGET_MS)}"
        lines.append(
            f"| {size} node{'s' if size != '1' else ''} × 1 Hz | {row['messages']} / {row['sent']} "
            f"| {row['p50']:.1f} ms | {row['p95']:.1f} ms | {row['p99']:.1f} ms | {target} |"
        )
    burst = figures["burst"]
    lines.append(
        f"| burst: {burst['messages']} messages at once ({burst['delivered']} delivered, "
        f"drained in {burst['seconds_to_drain']:.2f} s) | {burst['delivered']} / "
        f"{burst['messages']} "
        f"| {burst['p50']:.1f} ms | {burst['p95']:.1f} ms | {burst['p99']:.1f} ms | |"
    )
    lines.append(
        f"| memory per node (resident, added by each node up to {largest}) "
        f"| {figures['rss_per_node_kib']:.0f} KiB "
        "| | | | |"
    )
    return lines


def attack_table(runs: list[dict[str, Any]]) -> list[str]:
    """Return the under-attack rows: one per QoS of the flood, then the rejections by reason."""
    first = runs[0]
    rates = first["rate_per_s"]
    lines = [
        f"| {first['nodes']} v2 nodes × 1 Hz through Mosquitto while {rates['forged_v1']:,} "
        f"forged v1 envelopes and {rates['garbage']:,} garbage messages a second arrive "
        "| Delivered / sent | p50 | p95 | p99 | max | Longest stall | Target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        latency = run["latency_ms"]
        published = sum(stream["published"] for stream in run["attacker"].values())
        targets = (
            f"all delivered: {_mark(run['delivered'] == run['sent'])}; "
            f"p99 ≤ {P99_TARGET_MS:.0f} ms: {_mark(latency['p99'] <= P99_TARGET_MS)}; "
            f"stall ≤ {ATTACK_STALL_TARGET_MS:.0f} ms: "
            f"{_mark(run['longest_stall_ms'] <= ATTACK_STALL_TARGET_MS)}"
        )
        lines.append(
            f"| flood at QoS {run['qos']}: {published:,} messages in {run['attack_seconds']:.1f} s "
            f"({run['sent_during_attack']} readings sent during it) "
            f"| {run['delivered']} / {run['sent']} | {latency['p50']:.1f} ms "
            f"| {latency['p95']:.1f} ms | {latency['p99']:.1f} ms | {latency['max']:.1f} ms "
            f"| {run['longest_stall_ms']:.1f} ms | {targets} |"
        )
    header = " | ".join(f"flood at QoS {run['qos']}" for run in runs)
    lines += [
        "",
        f"| During the attack: rejected by reason (all {first['nodes'] + 1} nodes) | {header} |",
        "|---|" + "---|" * len(runs),
    ]
    for reason in first["rejections"]:
        if any(run["rejections"][reason] for run in runs):
            cells = " | ".join(f"{run['rejections'][reason]:,}" for run in runs)
            lines.append(f"| {reason} | {cells} |")
    cells = " | ".join(
        f"{run['rejected']:,} of "
        f"{sum(stream['published'] for stream in run['attacker'].values()):,} published"
        for run in runs
    )
    lines.append(f"| **all reasons** | {cells} |")
    rows = (
        ("state writes of the Rejected payloads entities", "rejected_entity_writes", "{:,}"),
        ("CPU of Home Assistant's process (one core = 100 %)", "ha_cpu_percent", "{:.0f} %"),
        ("CPU of the attacker's process", "attacker_cpu_percent", "{:.0f} %"),
        ("the machine's CPU busy (all cores)", "machine_busy_percent", "{:.0f} %"),
        ("Mosquitto dropping messages to Home Assistant (notices)", "broker_drop_notices", "{}"),
    )
    for label, key, spec in rows:
        cells = " | ".join(spec.format(run[key]) for run in runs)
        lines.append(f"| {label} | {cells} |")
    return lines


def alert_table(offline: dict[str, Any] | None, slow: dict[str, Any] | None) -> list[str]:
    """Return the alert latency rows."""
    lines = [
        "| Threshold crossing → | LLM | p50 | p95 | max |",
        "|---|---|---|---|---|",
    ]
    for name, figures in (("offline", offline), ("slow", slow)):
        if figures is None:
            continue
        llm = "offline" if name == "offline" else f"answers after {figures['llm_delay_s']:g} s"
        for what, key in (("event", "event_ms"), ("notification", "notification_ms")):
            row = figures[key]
            lines.append(
                f"| {what} | {llm} | {row['p50']:.1f} ms | {row['p95']:.1f} ms "
                f"| {row['max']:.1f} ms |"
            )
        if figures.get("explained_ms"):
            row = figures["explained_ms"]
            lines.append(
                f"| LLM explanation (event `explained`) | {llm} | {row['p50']:.0f} ms "
                f"| {row['p95']:.0f} ms | {row['max']:.0f} ms |"
            )
    return lines


def privacy_table(figures: dict[str, Any]) -> list[str]:
    """Return the privacy–utility rows."""
    lines = [
        "| ε | σ temperature | fire: recall, median time to alarm "
        "| gas leak: recall, median time to alarm | false alarms per node-week "
        "| anomaly F1 continuous / binary | occupancy per quarter hour guessed right "
        "(always guessing the likelier: …) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in figures["rows"]:
        cells = []
        for scenario in ("fire", "gas_leak"):
            h = row["hazards"][scenario]
            median = "–" if h["median_seconds"] is None else f"{h['median_seconds']:.0f} s"
            cells.append(f"{h['recall']:.0%}, {median}")
        f1 = row["anomaly_f1"]
        occ = row["occupancy"]
        lines.append(
            f"| {row['epsilon']} | {row['sigma_t']:g} °C | {cells[0]} | {cells[1]} "
            f"| {row['false_alarms_per_week']:.2f} | {f1['continuous']:.2f} / {f1['binary']:.2f} "
            f"| {occ['accuracy']:.0%} ({occ['chance']:.0%}) |"
        )
    return lines


def recorder_table(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Return the recorder rows: what a node writes to Home Assistant's database in a day."""
    motion = "binary_sensor.room_motion"
    before_motion = before["rows_by_entity_per_day"].get(motion, 0.0)
    after_motion = after["rows_by_entity_per_day"].get(motion, 0.0)
    sb, sa = before["stats_t"], after["stats_t"]
    return [
        f"| Recorder (Home Assistant's recorder on SQLite; one node every "
        f"{after['interval_s']:.0f} s in a steady room, ε = {after['epsilon']}, "
        f"{after['hours']:g} simulated hours) | Before | After | Target | |",
        "|---|---|---|---|---|",
        f"| state rows per node-day | {before['rows_per_day']:,.0f} | {after['rows_per_day']:,.0f} "
        f"| ≤ {ROWS_TARGET:,} | {_mark(after['rows_per_day'] <= ROWS_TARGET)} |",
        f"| … of which Motion (randomized response flips the noised flag) | "
        f"{before_motion:,.0f} | {after_motion:,.0f} | | |",
        f"| … all other entities | {before['rows_per_day'] - before_motion:,.0f} "
        f"| {after['rows_per_day'] - after_motion:,.0f} | | |",
        f"| database bytes per node-day | {before['bytes_per_day'] / 2**20:.1f} MiB "
        f"| {after['bytes_per_day'] / 2**20:.1f} MiB | – | |",
        f"| displayed temperature's standard deviation (true 21.5 °C) "
        f"| {before['sigma_t']:.2f} °C | {after['sigma_t']:.2f} °C "
        f"| ≤ {DISPLAY_SIGMA_TARGET} °C | {_mark(after['sigma_t'] <= DISPLAY_SIGMA_TARGET)} |",
        f"| long-term statistics of the temperature (5-minute): mean, lowest min, highest max "
        f"| {sb['mean']:.2f}, {sb['min']:.2f}, {sb['max']:.2f} °C "
        f"| {sa['mean']:.2f}, {sa['min']:.2f}, {sa['max']:.2f} °C | | |",
        f"| a fire's first reading → temperature state | {before['fire_written_s']:.0f} s "
        f"| {after['fire_written_s']:.0f} s | at once | {_mark(after['fire_written_s'] == 0)} |",
    ]


def soak_table(figures: dict[str, Any]) -> list[str]:
    """Return the soak's rows (so far, if it still runs)."""
    samples = figures["samples"]
    done = "memory" in figures
    last = samples[-1] if samples else {}
    minutes = last.get("minutes", 0.0)
    lines = [
        f"| Soak: {figures['nodes']} nodes × {figures['interval_s']:.0f} s through Mosquitto, "
        f"recorder on ({minutes:.0f} of {figures['minutes']:g} min"
        f"{'' if done else ', still running'}) | Figure |",
        "|---|---|",
    ]
    if samples:
        rss = [sample["rss_mib"] for sample in samples]
        lines += [
            f"| resident memory: first sample, lowest, highest, last | {rss[0]:.0f}, "
            f"{min(rss):.0f}, {max(rss):.0f}, {rss[-1]:.0f} MiB |",
            f"| database (SQLite with its write-ahead log) | {last['db_mib']:.1f} MiB |",
            f"| longest event-loop stall, garbage collection aside; longest GC pause "
            f"| {max(s['longest_stall_ms'] for s in samples):.0f} ms; "
            f"{max(s['longest_gc_pause_ms'] for s in samples):.0f} ms |",
            # The count at the last minute's sample; the end count is in the rows below.
            f"| readings accepted by the last sample; incidents opened / resolved "
            f"| {last['readings']:,}; {last['incidents_opened']} / {last['incidents_resolved']} |",
        ]
    if done:
        memory = figures["memory"]
        lines += [
            f"| readings sent / accepted (lost) | {figures['readings_sent']:,} / "
            f"{figures['readings_received']:,} ({sum(figures['lost'].values())}) |",
            f"| broker restarts; node restarts; fire readings | {figures['broker_restarts']}; "
            f"{figures.get('node_restarts', 0)}; {figures.get('fire_readings', 0)} |",
            f"| state rows in the database | {figures['state_rows']:,} |",
            f"| memory, middle third → last third of the run | {memory['middle_mib']:.0f} → "
            f"{memory['last_mib']:.0f} MiB ({'bounded' if memory['bounded'] else '**grows**'}) |",
        ]
    return lines


def soak_plot(figures: dict[str, Any], out: Path) -> Path:
    """Write the soak's curve: memory, database size and stalls over time."""
    out.mkdir(parents=True, exist_ok=True)
    samples = figures["samples"]
    minutes = [sample["minutes"] for sample in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    top.plot(minutes, [s["rss_mib"] for s in samples], label="resident memory (MiB)")
    top.plot(minutes, [s["db_mib"] for s in samples], label="database (MiB)")
    top.set_ylabel("MiB")
    top.set_ylim(bottom=0)
    top.legend(fontsize=8)
    top.set_title(
        f"Soak: {figures['nodes']} nodes every {figures['interval_s']:.0f} s, recorder on, "
        "fires, node and broker restarts"
    )
    bottom.plot(minutes, [s["longest_stall_ms"] for s in samples], label="longest loop stall")
    bottom.plot(minutes, [s["longest_gc_pause_ms"] for s in samples], label="longest GC pause")
    bottom.set_ylabel("ms per sample")
    bottom.set_xlabel("minutes")
    bottom.legend(fontsize=8)
    path = out / "soak.png"
    _save(fig, path, [])
    return path


def _save(fig: Any, path: Path, written: list[Path]) -> None:
    """Write one figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)


def _axis(ax: Any, labels: list[str], xlabel: str, ylabel: str, title: str) -> None:
    """Label a privacy plot's axes: ε categories along x."""
    ax.set_xticks(list(range(len(labels))), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)


def _privacy_plots(rows: list[dict[str, Any]], out: Path, written: list[Path]) -> None:
    """Write the four privacy–utility plots."""
    labels = [row["epsilon"] for row in rows]
    x = list(range(len(rows)))
    noise = "ε of the node's noise"

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for scenario, marker in (("fire", "o"), ("gas_leak", "s")):
        # Nothing detected has no time to detection: a gap in the line, not a zero.
        seconds = [
            math.nan if (m := row["hazards"][scenario]["median_seconds"]) is None else m
            for row in rows
        ]
        recall = [row["hazards"][scenario]["recall"] for row in rows]
        ax.plot(x, seconds, marker=marker, label=f"{scenario} (recall {min(recall):.0%}–"
                f"{max(recall):.0%})")  # fmt: skip
    _axis(ax, labels, noise, "median s to the alarm", "Hazard detection vs privacy")
    _save(fig, out / "privacy_hazards.png", written)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.bar(x, [row["false_alarms_per_week"] for row in rows], label="measured")
    ax.axhline(1.0, color="red", linestyle=":", label="target: ≤ 1")
    ax.set_yscale("symlog")
    _axis(ax, labels, noise, "incidents per node-week", "False alarms in an ordinary home")
    _save(fig, out / "privacy_false_alarms.png", written)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for kind, marker in (("continuous", "o"), ("binary", "s")):
        ax.plot(x, [row["anomaly_f1"][kind] for row in rows], marker=marker, label=kind)
    ax.set_ylim(0, 1.05)
    _axis(ax, labels, f"{noise} (motion: ε_m = 2)", "event-level F1", "Anomaly detection")
    _save(fig, out / "privacy_anomaly_f1.png", written)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(x, [row["occupancy"]["accuracy"] for row in rows], marker="o", label="observer")
    ax.plot(x, [row["occupancy"]["chance"] for row in rows], "k:", label="always the likelier")
    ax.set_ylim(0.4, 1.02)
    _axis(
        ax,
        labels,
        "ε_m of the motion sensor's randomized response",
        "quarter hours guessed right",
        "What the noise hides: presence at home",
    )
    _save(fig, out / "privacy_occupancy.png", written)


def _latency_plot(latency: dict[str, Any], out: Path, written: list[Path]) -> None:
    """Write the latency plot."""
    sizes = sorted(latency["sizes"], key=int)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key in ("p50", "p95", "p99"):
        values = [latency["sizes"][s][key] for s in sizes]
        ax.plot([int(s) for s in sizes], values, marker="o", label=key)
    ax.axhline(P99_TARGET_MS, color="red", linestyle=":", label="p99 target")
    ax.set_xlabel("nodes, each publishing once a second")
    ax.set_ylabel("publish → reading applied (ms)")
    ax.set_title("End-to-end latency through Mosquitto")
    ax.legend(fontsize=8)
    _save(fig, out / "latency.png", written)


def plots(figures: dict[str, dict[str, Any] | None], out: Path) -> list[Path]:
    """Write one PNG per trade-off; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if (privacy := figures.get("privacy")) is not None:
        _privacy_plots(privacy["rows"], out, written)
    if (latency := figures.get("latency")) is not None:
        _latency_plot(latency, out, written)
    return written


def report(folder: Path, plots_dir: Path) -> str:
    """Return the whole Markdown report and write the plots."""
    figures = {
        name: _load(folder, name)
        for name in (
            "ingestion",
            "latency",
            "attack_qos0",
            "attack_qos1",
            "alert_offline",
            "alert_slow",
            "privacy",
            "recorder_before",
            "recorder_after",
        )
    }
    lines = [
        f"Measured {datetime.now(UTC).date().isoformat()} on {machine()}.",
        "",
    ]
    if figures["ingestion"]:
        lines += [*ingestion_table(figures["ingestion"]), ""]
    if figures["latency"]:
        lines += [*latency_table(figures["latency"]), ""]
    if attacks := [run for run in (figures["attack_qos0"], figures["attack_qos1"]) if run]:
        lines += [*attack_table(attacks), ""]
    if figures["alert_offline"] or figures["alert_slow"]:
        lines += [*alert_table(figures["alert_offline"], figures["alert_slow"]), ""]
    if figures["privacy"]:
        lines += [*privacy_table(figures["privacy"]), ""]
    if figures["recorder_before"] and figures["recorder_after"]:
        lines += [*recorder_table(figures["recorder_before"], figures["recorder_after"]), ""]
    written = plots(figures, plots_dir)
    shown = [path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path.name
             for path in written]  # fmt: skip
    lines.append("Plots: " + ", ".join(f"`{path}`" for path in shown))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the report."""
    args = sys.argv[1:] if argv is None else argv
    soak = args[:1] == ["--soak"]
    args = args[1:] if soak else args
    if len(args) != 2:  # noqa: PLR2004
        print(__doc__)
        return 2
    if soak:
        figures = _load(Path(args[0]), "soak")
        if figures is None:
            print(f"no soak figures in {args[0]}")
            return 1
        print("\n".join(soak_table(figures)))
        if figures["samples"]:
            print(f"Plot: `{soak_plot(figures, Path(args[1]))}`")
        return 0
    print(report(Path(args[0]), Path(args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
