"""Beam pipeline options from a command line, refused when Beam would drop or choke on them.

Beam only logs a warning for an option it does not know (`--num_worker=5`) and drops it,
and exits the process from inside argparse for a bad value (`--direct_num_workers=x`). A
scoring job launched with a typo would then run somewhere else than asked, or kill the
command with Beam's whole usage text; `pipeline_options` raises `BadPipelineOption`
with one line instead. It asks Beam's own parser (`get_all_options`), so every option of
every runner Beam knows is accepted.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from serving.config.fields import PROJECT_ROOT

SETUP_FILE = PROJECT_ROOT / "setup.py"


class BadPipelineOption(ValueError):
    """A Beam pipeline option that Beam does not know, or whose value it cannot parse."""


def pipeline_options(flags: Sequence[str]) -> PipelineOptions:
    """`PipelineOptions` of `flags` (`--name=value` or `--name value`), every one checked."""
    options = PipelineOptions(list(flags))
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            known = options.get_all_options(retain_unknown_options=False)
            every = options.get_all_options(retain_unknown_options=True)
    except SystemExit:  # argparse's way of saying "bad value": its message went to stderr
        lines = [line for line in errors.getvalue().splitlines() if "error:" in line]
        message = lines[-1].split("error:", 1)[1].strip() if lines else "unparseable"
        raise BadPipelineOption(f"bad pipeline option: {message}") from None
    unknown = sorted(set(every) - set(known))
    if unknown:
        raise BadPipelineOption(
            "unknown pipeline option" + ("s " if len(unknown) > 1 else " ") + ", ".join(f"--{name}" for name in unknown)
        )
    return options


def ship_project(options: PipelineOptions) -> bool:
    """Ship this project to remote workers as a package (`--setup_file setup.py`) unless told how.

    Leaves `options` alone when they name a setup file or an SDK container image already;
    True when it added the setup file.
    """
    setup = options.view_as(SetupOptions)
    if setup.setup_file or options.get_all_options().get("sdk_container_image"):
        return False
    setup.setup_file = str(SETUP_FILE)
    return True
