"""A bad configuration stops the service at start with a message naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, WEBHOOK_SECRET
from triage.config import load_settings
from triage.errors import ConfigError

BASE_ENV = {"PARADIME_WEBHOOK_SECRET": WEBHOOK_SECRET}


def write(tmp_path: Path, doc) -> str:
    path = tmp_path / "triage.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    (tmp_path / "rules.yaml").write_text((REPO / "config" / "rules.yaml").read_text())
    return str(path)


def test_the_shipped_config_loads():
    settings = load_settings(BASE_ENV)
    assert settings.retry.max_attempts == 2
    assert settings.retry.backoff_for(1) == 60 and settings.retry.backoff_for(5) == 300
    assert settings.webhook.verification == "signature"
    assert settings.slack.mode == "log"


@pytest.mark.parametrize("doc, message", [
    ({"retry": {"max_attemps": 3}}, "retry.max_attemps: unknown key"),
    ({"retry": {"max_attempts": "two"}}, "retry.max_attempts: expected a whole number >= 0, got 'two'"),
    ({"retry": {"max_attempts": -1}}, "retry.max_attempts: expected a whole number >= 0"),
    ({"retry": {"backoff_seconds": [60, "5m"]}}, "retry.backoff_seconds: expected seconds >= 0, got '5m'"),
    ({"retry": {"backoff_seconds": []}}, "retry.backoff_seconds: expected a number or a non-empty list"),
    ({"retry": {"retry_unknown": "yes"}}, "retry.retry_unknown: expected true or false"),
    ({"retry": [1, 2]}, "retry: expected a mapping, got list"),
    ({"retries": {}}, "retries: unknown section"),
    ({"webhook": {"verification": "hmac"}}, "webhook.verification: 'hmac' is not one of"),
    ({"paradime": {"timeout_seconds": 0}}, "paradime.timeout_seconds: expected a positive number"),
    ({"classification": {"rules_files": ["nope.yaml"]}}, "classification.rules_files: file not found"),
    ("retry: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "top level must be a mapping"),
])
def test_bad_policy_files_name_the_key(tmp_path, doc, message):
    with pytest.raises(ConfigError) as info:
        load_settings(BASE_ENV, path=write(tmp_path, doc))
    assert message in str(info.value)


@pytest.mark.parametrize("env, message", [
    ({}, "PARADIME_WEBHOOK_SECRET: not set, nor PARADIME_WEBHOOK_TOKEN"),
    ({"PARADIME_WEBHOOK_SECRET": "whsec_"}, "PARADIME_WEBHOOK_SECRET: not a valid whsec_<base64> secret"),
    ({**BASE_ENV, "TRIAGE_WEBHOOK_VERIFICATION": "token"}, "PARADIME_WEBHOOK_TOKEN: required"),
    ({**BASE_ENV, "SLACK_BOT_TOKEN": "xoxb-1"}, None),  # the shipped config names a channel
    ({**BASE_ENV, "PARADIME_API_ENDPOINT": "api.paradime.io/graphql"}, "PARADIME_API_ENDPOINT: expected an http"),
    ({**BASE_ENV, "TRIAGE_CONFIG": "/nonexistent/triage.yaml"}, "TRIAGE_CONFIG: file not found"),
])
def test_bad_environment_names_the_variable(env, message):
    if message is None:
        assert load_settings(env).slack.channel == "#data-alerts"
        return
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert message in str(info.value)
    assert "whsec_" not in str(info.value).replace("whsec_<base64>", "")


def test_bot_token_without_any_channel_is_refused(tmp_path):
    path = write(tmp_path, {"slack": {}})
    with pytest.raises(ConfigError, match="SLACK_CHANNEL: required with SLACK_BOT_TOKEN"):
        load_settings({**BASE_ENV, "SLACK_BOT_TOKEN": "xoxb-1"}, path=path)


def test_worker_refuses_to_start_without_paradime_credentials(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PARADIME_WEBHOOK_SECRET": WEBHOOK_SECRET, "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "workers.worker", "--burst"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "configuration error: PARADIME_API_ENDPOINT: not set" in proc.stderr


def test_web_app_refuses_to_start_with_a_bad_config(tmp_path):
    from triage.app import create_app

    with pytest.raises(ConfigError, match="retry.max_attemps: unknown key"):
        create_app(load_settings(BASE_ENV, path=write(tmp_path, {"retry": {"max_attemps": 3}})))
