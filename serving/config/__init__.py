"""The server's configuration: one `Settings` object read from the environment once."""
