"""Errors of the push package.

::

    PushError                  base; ``retriable`` says whether trying again may help
    ├── CredentialsError       credentials present but unusable (bad key, refused grant)
    └── ProviderUnavailable    the provider's auth endpoint did not answer usefully (retriable)

A provider's answer to a notification is not an exception: it is an
:class:`tidings.push.base.Outcome` that the dispatcher acts on.
:class:`tidings.push.kafka.PushUnavailable` (Kafka did not take a request) stays with
the Kafka sink.
"""

from __future__ import annotations


class PushError(Exception):
    retriable = False


class CredentialsError(PushError):
    """The credentials in the settings cannot be used; the message says why."""


class ProviderUnavailable(PushError):
    retriable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
