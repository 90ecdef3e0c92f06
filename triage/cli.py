"""``triage`` command line: the two processes (``web``, ``worker``), the demo, a configuration
check, the offline rule-tuning tools, and the operations client (``ls``, ``show``, ``events``,
``replay``, ``cancel``, ``pause``, ``resume``: ``triage.opscli``)."""

from __future__ import annotations

import argparse
import os
import sys

#: What ``triage web`` runs: gunicorn with the package's settings module, so no file of the checkout is needed.
GUNICORN = ["-m", "gunicorn", "--config", "python:triage.gunicorn_conf"]
APP = "triage.app:create_app()"
#: Commands that talk to a running service's operations API (``TRIAGE_API_URL``).
OPS_COMMANDS = ("ls", "show", "events", "replay", "cancel", "pause", "resume")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="triage", description="bolt-triage: triage failed Paradime Bolt runs")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole service on embedded Redis and simulators, "
                                       "deliver webhooks for several failures, show Slack and the retries")
    demo.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
    demo.add_argument("--verbose", action="store_true", help="show the service's own logs")

    for name in OPS_COMMANDS:
        sub.add_parser(name, help=f"operations API: `triage {name} --help`")
    sub.add_parser("web", help="run the web process (gunicorn); arguments after it go to gunicorn")
    sub.add_parser("worker", help="run an RQ worker with the scheduler; `triage worker --help` for its options")

    cc = sub.add_parser("check-config", help="show what the environment and TRIAGE_CONFIG resolve to, and "
                                             "whether web and worker would start with them")
    cc.add_argument("--probe", action="store_true", help="also try Redis, Paradime and Slack")
    cc.add_argument("--only", choices=("web", "worker"), help="check one process's settings (its own env file)")

    rules_help = ("rule file, repeatable; replaces the rules the worker would use (default: the shipped rules "
                  "plus TRIAGE_CONFIG's classification.rules_files)")
    cl = sub.add_parser("classify", help="classify run_results.json / dbt log files offline and print the verdicts")
    cl.add_argument("paths", nargs="+", metavar="PATH", help="run_results.json, dbt log, manifest.json (owners)")
    cl.add_argument("--rules", action="append", metavar="FILE", help=rules_help)
    cl.add_argument("--adapter", help="the warehouse adapter, when the files do not tell")
    cl.add_argument("--json", action="store_true", help="machine-readable output")

    sp = sub.add_parser("slack-preview", help="print the Slack message (Block Kit JSON) the service would post "
                                              "for run_results.json / dbt log files, for Block Kit Builder")
    sp.add_argument("paths", nargs="+", metavar="PATH",
                    help="one run_results.json and/or dbt log, optionally a manifest.json (owners)")
    sp.add_argument("--rules", action="append", metavar="FILE", help=rules_help)
    sp.add_argument("--adapter", help="the warehouse adapter, when the files do not tell")
    sp.add_argument("--schedule", help="schedule name shown in the header (default: Bolt run)")
    sp.add_argument("--run-id", type=int, help="Bolt run id to link to (default: no link)")

    ev = sub.add_parser("eval", help="score the classifier on a labelled corpus (JSON Lines)")
    ev.add_argument("corpus", metavar="CORPUS.jsonl")
    ev.add_argument("--rules", action="append", metavar="FILE", help=rules_help)
    ev.add_argument("--min-transient-recall", type=float, default=0.0, metavar="R",
                    help="also fail when fewer than this share of transient messages are recognised (0-1)")
    ev.add_argument("--all", action="store_true", dest="every",
                    help="list every entry with the code extracted, the rule used and its source")
    ev.add_argument("--held-out-misses", action="store_true",
                    help="list the held-out part's misses too (they are hidden so that nobody tunes on them)")

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in OPS_COMMANDS:  # the operations API's client: its own parser (triage.opscli)
        from triage.opscli import main as ops_main

        return ops_main(argv)
    if argv[:1] == ["web"]:  # everything after `web` is gunicorn's, after `worker` the worker's
        return _web(argv[1:])
    if argv[:1] == ["worker"]:
        from workers.worker import main as worker_main

        return worker_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "demo":
        from triage.demo import run_demo

        return run_demo(workers=args.workers, verbose=args.verbose)
    if args.command == "check-config":
        from triage.checkconfig import check

        return check(only=args.only, probe=args.probe)
    if args.command == "classify":
        return _classify(args)
    if args.command == "slack-preview":
        return _slack_preview(args)
    if args.command == "eval":
        return _eval(args)
    return 2


def _web(gunicorn_args: list[str]) -> int:
    """Replace this process with gunicorn, so that signals from systemd or a platform reach it directly."""
    import triage.gunicorn_conf  # noqa: F401  (checks the settings, and gunicorn's env, with one-line errors)

    os.execv(sys.executable, [sys.executable, *GUNICORN, *gunicorn_args, APP])
    return 0  # not reached


def _rules(files: list[str] | None):
    """The worker's rule set (from TRIAGE_CONFIG), unless ``--rules`` names the files."""
    from triage.classify import RuleSet
    from triage.config import configured_rules_files

    return RuleSet.load(*(files or configured_rules_files()))


def _classify(args) -> int:
    from triage import explain
    from triage.errors import ArtifactError, ConfigError

    try:
        reports, notes = explain.explain(args.paths, _rules(args.rules), adapter=args.adapter)
    except (ArtifactError, ConfigError) as exc:
        print(f"triage classify: {exc}", file=sys.stderr)
        return 2
    print(explain.render_json(reports, notes) if args.json else explain.render_text(reports, notes), end="")
    return 0


def _slack_preview(args) -> int:
    import json

    from triage.errors import ArtifactError, ConfigError
    from triage.summary import preview

    try:
        message = preview(args.paths, _rules(args.rules), schedule=args.schedule, adapter=args.adapter,
                          run_id=args.run_id)
    except (ArtifactError, ConfigError) as exc:
        print(f"triage slack-preview: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"blocks": message.blocks, "text": message.text}, indent=2, ensure_ascii=False))
    return 0


def _eval(args) -> int:
    from triage import evaluate
    from triage.errors import ConfigError

    try:
        score = evaluate.evaluate(evaluate.load_corpus(args.corpus), _rules(args.rules))
    except (ConfigError, OSError) as exc:
        print(f"triage eval: {exc}", file=sys.stderr)
        return 2
    print(evaluate.render(score, held_out_misses=args.held_out_misses, every=args.every), end="")
    recall = score.precision_recall("transient")[1]
    if score.unsafe:
        print(f"FAIL: {len(score.unsafe)} deterministic message(s) would be retried", file=sys.stderr)
        return 1
    if recall < args.min_transient_recall:
        print(f"FAIL: transient recall {recall:.1%} is below {args.min_transient_recall:.0%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
