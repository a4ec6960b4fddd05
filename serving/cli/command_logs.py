"""How much the app logs while the `flask` command loads it to run one of the app's commands.

A command-line tool prints its result and its errors, nothing else. `flask --app main
new-model ...` builds the whole app to find the command, and building it logs the
server's start-up records ("platform local, log format json, ..."), which would land on
the terminal as JSON lines before the command's own output. Nor does building it load the
models (`MODEL_LOADING=eager`): no command uses the models the app loads (`flask score`
loads its own), and in a fresh clone, where `make models` has not exported
SentenceEmbedding yet, loading it would print a warning about a model the command never
touches.
"""

from __future__ import annotations

import logging

import click
from flask.cli import FlaskGroup


def command_log_level(level: str) -> str:
    """`level`, raised to WARNING while the `flask` command group loads the app to find a command.

    Only then: `flask run` loads the app inside its own command (the development server
    keeps its logs), and gunicorn, functions-framework and tests build the app outside the
    `flask` group, so they log at `level`.
    """
    if not loading_for_a_command():
        return level
    if logging.getLevelNamesMapping().get(level, logging.NOTSET) >= logging.WARNING:
        return level
    return "WARNING"


def loading_for_a_command() -> bool:
    """Whether the `flask` command group is loading the app to find one of the app's commands.

    Not for `flask run` or `flask shell`, which load the app inside their own command, nor
    for gunicorn, functions-framework and tests, which build it outside the `flask` group.
    """
    context = click.get_current_context(silent=True)
    return context is not None and isinstance(context.command, FlaskGroup)
