"""Exceptions that carry a message precise enough to show to a user as is."""


class ConfigError(Exception):
    """The configuration (env or YAML) is invalid; the message names the key."""


class ArtifactError(Exception):
    """A dbt artifact could not be read; the message says which part and why."""


class PayloadError(Exception):
    """A webhook body is malformed; the message names the field."""


class UpstreamError(Exception):
    """Paradime or Slack could not be reached or answered with an error, after bounded retries.

    ``retryable`` says whether trying again later may help (timeouts, 5xx, 429)
    as opposed to a definite refusal (GraphQL ``errors[]`` about the request itself, 4xx).
    """

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable
