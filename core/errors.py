"""The exceptions Updraft raises on purpose.

Every error a user can cause or meet (bad config, an unreachable daemon, a
lab that will not start) is one of these, so the command line can print it
as one clear line and exit 1, while a real bug still shows its traceback.
"""


class UpdraftError(Exception):
    """Base of every error Updraft reports to its user."""


class ConfigError(UpdraftError):
    """A configuration file is unreadable or does not validate."""


class CondorError(UpdraftError):
    """An HTCondor daemon refused, failed or did not answer in time."""


class DaemonSilent(CondorError):
    """A daemon did not answer within the deadline (or already missed it this cycle).

    Told apart from other failures so that a reader does not ask a silent
    daemon again: a collector that answered with an error may be asked a
    narrower question (`updraft.adread`), one that is silent may not.
    """


class CallFailed(CondorError):
    """A call ended without the daemon's answer: its process could not start, crashed or was killed.

    Told apart from a daemon's own refusal: it says nothing about what was
    asked (a submission refused for an entry's sake counts against the
    entry's health; one whose call crashed does not).
    """


class LabError(UpdraftError):
    """The grid lab could not be provisioned, started, or stopped."""


class MonitoringError(UpdraftError):
    """A monitoring writer could not store a snapshot; the cycle goes on without it."""


class SealError(UpdraftError):
    """A sealed credential does not open: unknown key, tampered, or sealed for someone else.

    Its message never holds the plaintext, nor the key material.
    """


class TokenError(UpdraftError):
    """A pilot token cannot be minted or read: missing signing key, bad lifetime, malformed token.

    Its message never holds the token or the key.
    """


class CloudError(UpdraftError):
    """A cloud API (EC2) refused, failed or did not answer in time, or its credentials could not be read."""
