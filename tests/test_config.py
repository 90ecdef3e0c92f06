"""The policy is layered over the shipped defaults, and a bad setting is named precisely."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from tests.conftest import WEBHOOK_SECRET
from triage.classify import RuleSet
from triage.config import (
    DEFAULT_POLICY,
    SHIPPED_RULES,
    configured_rules_files,
    load_settings,
    require_web,
    require_worker,
)
from triage.errors import ConfigError

BASE_ENV = {"PARADIME_WEBHOOK_SECRET": WEBHOOK_SECRET}
WORKER_ENV = {"PARADIME_API_ENDPOINT": "https://api.paradime.io/api/v1/tok/graphql", "PARADIME_API_KEY": "k",
              "PARADIME_API_SECRET": "s"}
SHIPPED_COUNT = len(RuleSet.load(SHIPPED_RULES).rules)


def write(tmp_path: Path, doc, name: str = "triage.yaml") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(path)


def test_the_shipped_defaults_load_without_a_policy_file():
    settings = load_settings(BASE_ENV)
    assert settings.retry.max_attempts == 2
    assert settings.retry.backoff_for(1) == 60 and settings.retry.backoff_for(5) == 300
    assert settings.webhook.verification == "signature"
    assert settings.slack.mode == "log"
    assert settings.rules_files == (SHIPPED_RULES,) and settings.config_path is None


def test_a_two_line_policy_keeps_every_other_default_and_the_shipped_rules(tmp_path):
    path = write(tmp_path, "retry:\n  max_attempts: 1\n")
    settings = load_settings(BASE_ENV, path=path)
    shipped = load_settings(BASE_ENV)
    assert settings.retry.max_attempts == 1
    assert settings.retry.backoff_seconds == shipped.retry.backoff_seconds
    assert settings.paradime == shipped.paradime and settings.slack == shipped.slack
    assert settings.rules_files == (SHIPPED_RULES,)
    assert len(RuleSet.load(*settings.rules_files).rules) == SHIPPED_COUNT


def test_nested_mappings_merge_key_by_key(tmp_path):
    settings = load_settings(BASE_ENV, path=write(tmp_path, {"slack": {"storm": {"hold_seconds": 5}}}))
    assert (settings.slack.storm_hold_seconds, settings.slack.storm_window_seconds) == (5, 900)


def test_user_rule_files_add_override_and_disable_relative_to_the_policy(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ours.yaml").write_text(yaml.safe_dump({"rules": [
        {"name": "our_vendor_flaky", "pattern": "vendor API 503", "verdict": "transient", "category": "connection"},
        {"name": "snowflake_lock_waiters", "enabled": False},
    ]}))
    path = write(tmp_path, {"classification": {"rules_files": ["rules/ours.yaml"]}})
    settings = load_settings(BASE_ENV, path=path)
    assert settings.rules_files == (SHIPPED_RULES, (tmp_path / "rules" / "ours.yaml").resolve())
    rules = RuleSet.load(*settings.rules_files)
    assert rules.get("our_vendor_flaky") is not None and rules.get("snowflake_lock_waiters") is None
    assert len(rules.rules) == SHIPPED_COUNT


def test_the_shipped_rules_can_be_turned_off_explicitly(tmp_path):
    (tmp_path / "only.yaml").write_text(yaml.safe_dump({"rules": [
        {"name": "only_rule", "pattern": "x", "verdict": "transient", "category": "connection"}]}))
    path = write(tmp_path, {"classification": {"shipped_rules": False, "rules_files": ["only.yaml"]}})
    assert len(RuleSet.load(*load_settings(BASE_ENV, path=path).rules_files).rules) == 1
    with pytest.raises(ConfigError, match="shipped_rules is false and rules_files is empty: no rules"):
        load_settings(BASE_ENV, path=write(tmp_path, {"classification": {"shipped_rules": False}}))


def test_a_policy_from_before_layering_still_loads_with_a_deprecation_warning(tmp_path, caplog):
    """0.1 policies were full copies that listed the shipped rules as `rules.yaml` beside them."""
    old = yaml.safe_load(DEFAULT_POLICY.read_text())
    old["classification"] = {"rules_files": ["rules.yaml"]}
    with caplog.at_level(logging.WARNING, logger="triage.config"):
        settings = load_settings(BASE_ENV, path=write(tmp_path, old))
    assert settings.rules_files == (SHIPPED_RULES,)
    assert "classification.rules_files: 'rules.yaml' is deprecated" in caplog.text


def test_the_offline_tools_use_the_rules_of_triage_config(tmp_path):
    (tmp_path / "ours.yaml").write_text(yaml.safe_dump({"rules": [
        {"name": "ours", "pattern": "x", "verdict": "transient", "category": "connection"}]}))
    path = write(tmp_path, {"classification": {"rules_files": ["ours.yaml"]}})
    assert configured_rules_files({"TRIAGE_CONFIG": path}) == (SHIPPED_RULES, (tmp_path / "ours.yaml").resolve())
    assert configured_rules_files({}) == (SHIPPED_RULES,)


@pytest.mark.parametrize("doc, message", [
    ({"retry": {"max_attemps": 3}}, "retry.max_attemps: unknown key (allowed: backoff_seconds, "
                                    "give_up_after_unrecovered, max_attempts, retry_unknown, retry_unknown_if_flaky, "
                                    "same_error_runs)"),
    ({"retry": {"max_attempts": "two"}}, "retry.max_attempts: expected a whole number >= 0, got 'two'"),
    ({"retry": {"max_attempts": -1}}, "retry.max_attempts: expected a whole number >= 0"),
    ({"retry": {"backoff_seconds": [60, "5m"]}}, "retry.backoff_seconds: expected seconds >= 0, got '5m'"),
    ({"retry": {"backoff_seconds": []}}, "retry.backoff_seconds: expected a number or a non-empty list"),
    ({"retry": {"retry_unknown": "yes"}}, "retry.retry_unknown: expected true or false"),
    ({"retry": [1, 2]}, "retry: expected a mapping, got list"),
    ({"retries": {}}, "retries: unknown section"),
    ({"webhook": {"verification": "hmac"}}, "webhook.verification: 'hmac' is not one of auto, signature, token, none"),
    ({"paradime": {"timeout_seconds": 0}}, "paradime.timeout_seconds: expected a positive number"),
    ({"slack": {"storm": {"hold_secs": 5}}}, "slack.storm.hold_secs: unknown key (allowed: hold_seconds, "
                                             "min_schedules, window_seconds)"),
    ({"slack": {"storm": 5}}, "slack.storm: expected a mapping, got int"),
    ({"classification": {"rules_files": ["nope.yaml"]}}, "classification.rules_files: file not found: "),
    ({"classification": {"rules_files": "ours.yaml"}}, "classification.rules_files: expected a list of paths"),
    ("retry: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "top level must be a mapping"),
])
def test_bad_policy_files_name_the_key(tmp_path, doc, message):
    with pytest.raises(ConfigError) as info:
        load_settings(BASE_ENV, path=write(tmp_path, doc))
    assert message in str(info.value)


@pytest.mark.parametrize("env, message", [
    ({"REDIS_URL": "127.0.0.1:6379"},
     "REDIS_URL: expected redis://host:port/db, rediss://… or unix://…, got '127.0.0.1:6379'"),
    ({"REDIS_URL": "redis://:hunter2@/0"}, "REDIS_URL: not a valid Redis URL: 'redis://:***@/0'"),
    ({"REDIS_URL": "http://:hunter2@cache:6379"}, "REDIS_URL: expected redis://host:port/db, rediss://… or "
                                                  "unix://…, got 'http://:***@cache:6379'"),
    ({"TRIAGE_CONFIG": "/nonexistent/triage.yaml"}, "TRIAGE_CONFIG: file not found: /nonexistent/triage.yaml"),
])
def test_bad_environment_names_the_variable(env, message):
    with pytest.raises(ConfigError) as info:
        load_settings({**BASE_ENV, **env})
    assert str(info.value) == message
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("env, message", [
    ({}, "PARADIME_WEBHOOK_SECRET: not set, nor PARADIME_WEBHOOK_TOKEN; set one, or set webhook.verification: "
         "none (or TRIAGE_WEBHOOK_VERIFICATION=none) to accept unverified webhooks"),
    ({"PARADIME_WEBHOOK_SECRET": "whsec_"}, "PARADIME_WEBHOOK_SECRET: not a valid whsec_<base64> secret"),
    ({**BASE_ENV, "TRIAGE_WEBHOOK_VERIFICATION": "token"},
     "PARADIME_WEBHOOK_TOKEN: required by webhook.verification: token"),
])
def test_the_web_process_asks_for_its_own_settings(env, message):
    settings = load_settings(env)  # both processes load it; only the web refuses
    with pytest.raises(ConfigError) as info:
        require_web(settings)
    assert str(info.value) == message


@pytest.mark.parametrize("env, message", [
    ({"PARADIME_API_KEY": ""}, "PARADIME_API_KEY: not set; the worker needs it to read runs and retry them"),
    ({"PARADIME_API_ENDPOINT": "api.paradime.io/graphql"},
     "PARADIME_API_ENDPOINT: expected https://api…paradime.io/api/v1/<token>/graphql"),
    ({"SLACK_WEBHOOK_URL": "hooks.slack.com/services/T0/B0/abc"},
     "SLACK_WEBHOOK_URL: expected https://hooks.slack.com/services/T…/B…/…"),
    ({"SLACK_WEBHOOK_URL": "https://hooks.slack.com/T0123/B0123/abcdef"},
     "SLACK_WEBHOOK_URL: the path on hooks.slack.com is not an incoming-webhook path (/services/T…/B…/…); "
     "copy the URL from the Slack app's Incoming Webhooks page"),
    ({"SLACK_BOT_TOKEN": "sk-123"}, "SLACK_BOT_TOKEN: expected a Slack token (xoxb-…)"),
    ({"SLACK_API_URL": "slack.local"}, "SLACK_API_URL: expected an http(s) URL, got 'slack.local'"),
])
def test_the_worker_asks_for_its_own_settings_and_never_echoes_a_secret(env, message):
    settings = load_settings({**WORKER_ENV, **env})  # no webhook secret: the worker does not need it
    with pytest.raises(ConfigError) as info:
        require_worker(settings)
    assert str(info.value) == message
    assert "abcdef" not in str(info.value) and "sk-123" not in str(info.value)


def test_the_worker_needs_no_webhook_secret():
    assert require_worker(load_settings(WORKER_ENV)) == []


def test_bot_token_without_any_channel_is_refused(tmp_path):
    settings = load_settings({**WORKER_ENV, "SLACK_BOT_TOKEN": "xoxb-1"}, path=write(tmp_path, {"slack": {
        "channel": ""}}))
    with pytest.raises(ConfigError, match="SLACK_CHANNEL: required with SLACK_BOT_TOKEN"):
        require_worker(settings)


def test_both_slack_modes_set_warns_that_the_bot_token_wins():
    env = {**WORKER_ENV, "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x"}
    settings = load_settings(env)
    assert require_worker(settings) == ["SLACK_WEBHOOK_URL: ignored, SLACK_BOT_TOKEN is set too (bot-token mode wins)"]
    assert settings.slack.mode == "api"


def test_web_app_refuses_to_start_with_a_bad_config(tmp_path):
    from triage.app import create_app

    with pytest.raises(ConfigError, match="retry.max_attemps: unknown key"):
        create_app(load_settings(BASE_ENV, path=write(tmp_path, {"retry": {"max_attemps": 3}})))


def test_every_shipped_policy_key_is_read_by_one_settings_field():
    """One schema: the shipped YAML names each key and its default once; the settings classes name
    its check. A key in the file that no field reads (or a field whose key is not in the file) fails."""
    from dataclasses import fields

    from triage import config

    def leaves(doc, prefix=""):
        for key, value in doc.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                yield from leaves(value, path + ".")
            else:
                yield path

    read = {f.metadata["policy"] for cls in (config.RetryPolicy, config.JobPolicy, config.Retention,
                                            config.WebhookSettings, config.ParadimeSettings, config.SlackSettings,
                                            config.MonitoringSettings, config.LedgerSettings)
            for f in fields(cls) if "policy" in f.metadata}
    by_hand = {"webhook.verification", "slack.channel", "classification.shipped_rules", "classification.rules_files"}
    shipped = set(leaves(config.load_policy()[0]))
    assert read | by_hand == shipped
