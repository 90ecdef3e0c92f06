"""``triage`` command line: ``triage demo`` (and later the offline tools)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage", description="bolt-triage: triage failed Paradime Bolt runs")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole service on embedded Redis and simulators, "
                                       "deliver webhooks for several failures, show Slack and the retries")
    demo.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
    demo.add_argument("--verbose", action="store_true", help="show the service's own logs")

    sub.add_parser("check-config", help="load the configuration (env + TRIAGE_CONFIG) and report problems")

    args = parser.parse_args(argv)
    if args.command == "demo":
        from triage.demo import run_demo

        return run_demo(workers=args.workers, verbose=args.verbose)
    if args.command == "check-config":
        return _check_config()
    return 2


def _check_config() -> int:
    from triage.classify import RuleSet
    from triage.config import load_settings
    from triage.errors import ConfigError

    try:
        settings = load_settings()
        rules = RuleSet.load(*settings.rules_files)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    print(f"config: {settings.config_path}")
    print(f"webhook verification: {settings.webhook.verification}")
    print(f"paradime API: {'configured' if settings.paradime.configured else 'NOT configured (worker will refuse)'}")
    print(f"slack: {settings.slack.mode}")
    print(f"retry: at most {settings.retry.max_attempts}, backoff {list(settings.retry.backoff_seconds)} s")
    print(f"rules: {len(rules.rules)} from {', '.join(str(p) for p in settings.rules_files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
