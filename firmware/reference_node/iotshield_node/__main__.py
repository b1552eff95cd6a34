"""Command line of the reference node.

python -m iotshield_node run --key ha_public.pem --node-id kitchen --scenario fire ...
python -m iotshield_node simulate --scenario gas_leak --count 2000 --out samples.jsonl
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import UTC, datetime
import json
import logging
from pathlib import Path
import signal
import sys
import threading
from typing import TextIO

from cryptography.hazmat.primitives.asymmetric import rsa

from .node import BrokerConfig, ReferenceNode
from .privacy import NoiseSource, PrivacyConfig, privatize
from .simulation import (
    DEFAULT_START,
    SCENARIOS,
    Label,
    Recording,
    ScenarioCycle,
    ScenarioRun,
    parse_cycle,
    scenario_run,
    simulate,
)
from .telemetry import load_public_key


def _privacy(args: argparse.Namespace) -> PrivacyConfig:
    """Build the privacy parameters from the command line."""
    return PrivacyConfig(
        epsilon=args.epsilon,
        delta=args.delta,
        gas_bound=args.gas_bound,
        motion_epsilon=args.motion_epsilon,
    )


def _node_ids(args: argparse.Namespace) -> list[str]:
    """Return the node ids given, or node-01 … node-N."""
    if args.node_id:
        return list(args.node_id)
    return [f"node-{i:02d}" for i in range(1, args.nodes + 1)]


def _key_for(args: argparse.Namespace, node_id: str) -> rsa.RSAPublicKey:
    """Return the Home Assistant public key a node encrypts for."""
    path = args.key_dir / f"{node_id}.pem" if args.key_dir else args.key
    if path is None:
        sys.exit("give --key FILE or --key-dir DIR (holding <node id>.pem)")
    return load_public_key(Path(path).read_bytes())


def _write_truth(path: Path | None, labels: list[tuple[str, Label]]) -> None:
    """Write the ground truth, one JSON object per line."""
    if path is None:
        return
    with path.open("w") as out:
        for node_id, label in labels:
            out.write(json.dumps({"node": node_id, **label.as_dict()}) + "\n")


def cmd_run(args: argparse.Namespace) -> int:
    """Run live nodes against a broker until interrupted or --count readings each."""
    password = args.password_file.read_text().strip() if args.password_file else args.password
    broker = BrokerConfig(args.broker, args.port, args.username, password)
    start = datetime.now(UTC)
    nodes: list[ReferenceNode] = []
    for index, node_id in enumerate(_node_ids(args)):
        run: ScenarioRun | ScenarioCycle | Recording
        if args.readings:
            try:
                run = Recording.load(args.readings)
            except (OSError, ValueError) as err:
                problem = str(err)
            else:
                problem = ""
            if problem:
                # A user's mistake, not a crash: one line, no traceback.
                logging.getLogger(__name__).error("Cannot play --readings: %s", problem)
                return 2
        elif args.cycle:
            run = ScenarioCycle(args.cycle, seed=args.seed + index, start=start)
        else:
            run = scenario_run(
                args.scenario,
                seed=args.seed + index,
                start=start,
                interval=args.interval,
                count=None,
                event_at=args.event_at,
            )
        nodes.append(
            ReferenceNode(
                node_id=node_id,
                public_key=_key_for(args, node_id),
                broker=broker,
                scenario=run,
                interval=args.interval,
                privacy=_privacy(args),
                noise_seed=None if args.noise_seed is None else args.noise_seed + index,
                prefix=args.prefix,
                flat_topic=args.flat_topic,
                protocol=args.protocol,
                state_dir=args.state_dir,
            )
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=node.run, args=(args.count,), daemon=True) for node in nodes]
    for node in nodes:
        node.start()
    for thread in threads:
        thread.start()
    try:
        while not stop.is_set() and any(thread.is_alive() for thread in threads):
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    for node in nodes:
        node.stop()
    _write_truth(
        args.truth,
        [(node.node_id, label) for node in nodes for label in node.labels],
    )
    return 0


def cmd_simulate(args: argparse.Namespace, out: TextIO) -> int:
    """Write simulated readings (raw and as sent) without any broker."""
    privacy = _privacy(args)
    noise = NoiseSource(args.noise_seed if args.noise_seed is not None else args.seed)
    samples, labels = simulate(
        args.scenario,
        seed=args.seed,
        count=args.count or 1000,
        interval=args.interval,
        start=args.start,
        event_at=args.event_at,
        cycle=args.cycle,
    )
    for sample in samples:
        sent = privatize(sample.readings, privacy, noise)
        out.write(
            json.dumps(
                {
                    "seq": sample.seq,
                    "t": sample.timestamp,
                    "raw": asdict(sample.readings),
                    "sent": asdict(sent),
                },
                separators=(",", ":"),
            )
            + "\n"
        )
    _write_truth(
        args.truth, [(args.node_id[0] if args.node_id else "node-01", label) for label in labels]
    )
    return 0


def _cycle(text: str) -> list[tuple[str, float]]:
    """Parse --cycle for argparse."""
    try:
        return parse_cycle(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser."""
    parser = argparse.ArgumentParser(prog="iotshield_node", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="publish live readings to a broker")
    sim = sub.add_parser("simulate", help="write simulated readings to a file")
    for p in (run, sim):
        p.add_argument("--node-id", action="append", help="node id (repeat for several)")
        p.add_argument("--nodes", type=int, default=1, help="number of nodes without --node-id")
        p.add_argument("--interval", type=int, default=5, help="seconds between readings")
        p.add_argument("--scenario", choices=SCENARIOS, default="normal")
        p.add_argument("--seed", type=int, default=1, help="seed of the simulated home")
        p.add_argument("--noise-seed", type=int, help="seed the privacy noise (tests only)")
        p.add_argument("--event-at", type=float, help="seconds after start the event begins")
        p.add_argument("--count", type=int, help="readings per node, then stop")
        p.add_argument("--truth", type=Path, help="write the ground-truth labels here")
        p.add_argument("--epsilon", type=float, default=0.5, help="0 turns noise off")
        p.add_argument("--delta", type=float, default=1e-5)
        p.add_argument("--gas-bound", type=float, default=0.03)
        p.add_argument("--motion-epsilon", type=float, default=2.0, help="0 turns RR off")
        p.add_argument(
            "--cycle",
            type=_cycle,
            help="play scenarios in turn, e.g. normal:60,gas_leak:90,normal:60,fire:60",
        )
    run.add_argument(
        "--readings",
        type=Path,
        help="play the raw readings of this file (as `simulate` writes it), then hold the last",
    )
    run.add_argument("--broker", default="127.0.0.1")
    run.add_argument("--port", type=int, default=1883)
    run.add_argument("--username")
    run.add_argument("--password")
    run.add_argument("--password-file", type=Path)
    run.add_argument("--key", type=Path, help="Home Assistant's public key (PEM)")
    run.add_argument("--key-dir", type=Path, help="folder of <node id>.pem public keys")
    run.add_argument("--prefix", default="iotshield")
    run.add_argument("--flat-topic", action="store_true", help="publish to <prefix>/sensors/data")
    run.add_argument(
        "--protocol",
        type=int,
        choices=(1, 2),
        default=2,
        help="wire format (default 2, revision 1; 1 obeys only publish_now)",
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".iotshield-node"),
        help="where v2 identity keys and counters are kept",
    )
    sim.add_argument("--start", type=datetime.fromisoformat, default=DEFAULT_START)
    sim.add_argument("--out", type=Path, help="file for the readings (default: stdout)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "run":
        return cmd_run(args)
    if args.out:
        with args.out.open("w") as out:
            return cmd_simulate(args, out)
    return cmd_simulate(args, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
