"""The server's configuration: one `Settings` object read from the environment once.

`settings.py` combines the fields each concern declares (server.py, models.py,
platform.py, jobs.py, security.py; parsers.py parses single values). This package is the
only place that raises `SettingsError`.
"""

from serving.config.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError"]
