"""Exception type of the launcher layer."""

from __future__ import annotations

from ner_lightning.errors import NerLightningError


class LaunchError(NerLightningError):
    """A launch-side problem (config, infrastructure, asset, job) with its location and fix."""


class JobFailedError(LaunchError):
    """A submitted job ended in a status other than Completed."""
