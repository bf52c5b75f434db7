"""Option types shared by several commands (closed choices are the shared enums: Typer checks them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bikeshare.enums import Alias, Target

TargetOpt = Annotated[Target, typer.Option(help="Target: bikes | docks.")]
ToAliasOpt = Annotated[Alias, typer.Option("--to", help="Alias to move: staging | production.")]
NoteOpt = Annotated[str, typer.Option(help="Why: kept in the audit history and on the version.")]
TestStartOpt = Annotated[str | None, typer.Option(help="First test slot (UTC ISO).")]
ArtifactsOpt = Annotated[Path | None, typer.Option(help="Artifacts folder; default under state_dir/training.")]
ReplayClockOpt = Annotated[
    str | None, typer.Option("--replay-clock", help="Take 'now' from the replay server at this base URL.")
]
EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint", help="Endpoint base URL; default: endpoint_url (serve_host:serve_port).")
]
StartOpt = Annotated[str | None, typer.Option(help="First feature slot used (UTC ISO); default: all.")]
EndOpt = Annotated[str | None, typer.Option(help="Last feature slot used (UTC ISO).")]
