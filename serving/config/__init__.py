"""The server's configuration: one `Settings` object read from the environment once.

`settings.py` combines the groups of fields each concern declares (server.py, models.py,
platform.py, jobs.py, security.py, artifacts_settings.py; parsers.py parses single
values), in the order `SETTINGS_GROUPS` lists them. A bad value raises `SettingsError`
naming the variable: here for what the environment alone decides, and in the module
that has the facts for a check that needs more (the served models, a directory on disk).
"""

from serving.config.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError"]
