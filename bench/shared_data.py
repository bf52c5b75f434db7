"""The shared Bay Wheels recording for the benches, converted once into the project's recording format."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bikeshare.gbfs.recording import Recording

RECORDING = "baywheels-2023-03"


def shared_recording(shared: str | Path | None, cache: Path) -> Recording:
    """``<shared>/baywheels-2023-03`` (``shared`` else BIKESHARE_SHARED_DATA else ../shared/data) as a
    recording under ``cache``, converted on first use; exits naming the folder when it is missing."""
    from bikeshare.gbfs.recording import Recording, RecordingError, import_jsonl_recording

    root = Path(shared or os.environ.get("BIKESHARE_SHARED_DATA") or "../shared/data")
    src = root / RECORDING
    if not (src / "station_status.jsonl.gz").is_file():
        sys.exit(
            f"shared recording not found at {src}: pass --shared <folder holding {RECORDING}/> "
            "or set BIKESHARE_SHARED_DATA"
        )
    dest = cache / RECORDING
    try:
        return Recording.open(dest)
    except RecordingError:
        print(f"converting {src} into {dest} (once) ...", flush=True)
        return import_jsonl_recording(src, dest, city="sf", overwrite=True)
