"""What the Ray tests share (tests/test_cluster.py, tests/test_cluster_faults.py): the recordings they send, the
options they run with, and how they read back what a batch stored. Each of the two files has a Ray cluster of
its own (the `cluster` fixture, tests/conftest.py), so that pytest-xdist runs them side by side."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from pipeline.process import RunOptions
from pipeline.store import Store

SHORT = [
    "zh/FireRedTeam_FireRedASR__examples_wav_IT0011W0001.wav",  # 2 s
    "zh/FireRedTeam_FireRedASR__examples_wav_BAC009S0764W0121.wav",  # 4.2 s
    "en/k2-fsa_sherpa___static_sense-voice_en.wav",  # 7.2 s
]
OPTIONS = RunOptions(speakers=None, codebook=None, out_dir=None)  # --speakers off --no-tag
RAY = str(Path(sys.executable).with_name("ray"))
OHP = [sys.executable, "-c", "from pipeline.cli import app; app()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stored(store: Store) -> dict[str, list[tuple]]:
    """Each recording's segments with their words, by sha256, as the database holds them."""
    return {
        r.sha256: [
            (s.start, s.end, s.text, s.original_text, [(w.start, w.end, w.text) for w in s.words])
            for s in store.segments(r.id)
        ]
        for r in store.list_recordings()
    }
