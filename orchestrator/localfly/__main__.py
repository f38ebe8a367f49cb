"""``python -m orchestrator.localfly serve|up|down|status``: run or manage a local Fly."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from orchestrator.errors import OrchestratorError
from orchestrator.localfly import control
from orchestrator.localfly.profiles import PROFILES, get_profile

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.localfly", description="The embedded local Fly."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server in the foreground")
    up = sub.add_parser("up", help="start the server in the background (if not running)")
    for p in (serve, up):
        p.add_argument("--profile", choices=PROFILES, default="fast", help="latency profile")
        p.add_argument(
            "--time-factor",
            type=float,
            default=1.0,
            help="multiply added delays and rate-limit windows by this",
        )
    serve.add_argument("--api-port", type=int, default=0, help="API port (0: any free)")
    serve.add_argument("--proxy-port", type=int, default=0, help="proxy port (0: any free)")
    down = sub.add_parser("down", help="stop the server and every machine process")
    down.add_argument("--purge", action="store_true", help="also delete volumes and state")
    status = sub.add_parser("status", help="describe the server")
    for p in (serve, up, down, status):
        p.add_argument(
            "--state-dir",
            type=Path,
            default=Path(".localfly"),
            help="the state directory (default: ./.localfly)",
        )
    return parser


def _print(value: object) -> None:
    data = dataclasses.asdict(value)  # type: ignore[call-overload]
    data.pop("token", None)
    print(json.dumps(data, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            from orchestrator.localfly.server import serve

            try:
                profile = get_profile(args.profile, args.time_factor)
            except ValueError as exc:
                print(f"--time-factor: {exc}", file=sys.stderr)
                return 2
            serve(args.state_dir, profile, api_port=args.api_port, proxy_port=args.proxy_port)
        elif args.command == "up":
            _print(
                control.ensure_running(
                    args.state_dir, profile=args.profile, time_factor=args.time_factor
                )
            )
        elif args.command == "down":
            _print(control.stop(args.state_dir, purge=args.purge))
        else:
            _print(control.status(args.state_dir))
    except OrchestratorError as exc:
        print(f"localfly: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
