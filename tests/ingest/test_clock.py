from __future__ import annotations

import pandas as pd

from bikeshare.gbfs.replay import ReplayServer
from bikeshare.ingest.clock import ReplayFollower


def test_the_follower_reads_the_replay_clock_and_keeps_the_last_reading(replay: ReplayServer, free_port: int) -> None:
    follower = ReplayFollower(replay.url)
    assert follower() == replay.clock.now()
    replay.clock.advance(120)
    reading = follower()
    assert reading == replay.clock.now()
    replay.stop()
    assert follower() == reading  # unreachable: the last reading, not an error

    before = pd.Timestamp.now(tz="UTC")
    assert ReplayFollower(f"http://127.0.0.1:{free_port}")() >= before  # never read: the wall clock
