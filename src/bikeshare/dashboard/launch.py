"""Starting the dashboard: ``streamlit run`` on the app file, with the settings passed through the environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from bikeshare.settings import CONFIG_ENV_VAR, Settings

APP_FILE = Path(__file__).with_name("app.py")
ENV_PREFIX = "BIKESHARE_"


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with every setting as a ``BIKESHARE_*`` variable.

    The app rebuilds the very same Settings from them; the config file variable is dropped because
    its values are already in the variables.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if k != CONFIG_ENV_VAR}
    for name in type(settings).model_fields:
        key = ENV_PREFIX + name.upper()
        value = getattr(settings, name)
        if value is None:
            env.pop(key, None)
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, list | dict):
            env[key] = json.dumps(value)
        else:
            env[key] = str(value)
    return env


def streamlit_command(*, port: int, python: str | None = None) -> list[str]:
    """The server command line: ``streamlit run`` on the app (through :mod:`bikeshare.dashboard.serve`,
    which warms the process up first), headless, loopback only, no usage statistics, no file watcher,
    and a minimal toolbar (no "Deploy" button: this is an operator's screen, not a development server)."""
    return [
        python or sys.executable,
        "-m",
        "bikeshare.dashboard.serve",
        "--server.headless=true",
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--browser.gatherUsageStats=false",
        "--global.developmentMode=false",
        "--client.toolbarMode=minimal",
    ]


def run_dashboard(settings: Settings, *, port: int, fleet_file: Path | None = None) -> int:
    """Run Streamlit until it exits, Ctrl-C or SIGTERM (passed on to it); return its exit code.

    ``fleet_file`` (``bikeshare --fleet f dashboard``) goes to the app as ``BIKESHARE_FLEET``: its
    cities join the lake's in the city picker."""
    from bikeshare.fleet import FLEET_ENV_VAR

    env = settings_env(settings)
    if fleet_file is not None:
        env[FLEET_ENV_VAR] = str(fleet_file.resolve())
    child = subprocess.Popen(streamlit_command(port=port), env=env)  # noqa: S603

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return child.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to both processes: let Streamlit finish
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.terminate()
            child.wait(timeout=10)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
