"""Train the Rasa model only when its inputs changed.

The model file is named by a hash of everything that shapes it (config,
domain, training data, and the Rasa version), so an unchanged project reuses
``models/<hash>.tar.gz`` and a changed one trains once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from devstack.processes import ROOT

INPUTS = ("config.yml", "domain.yml", "data")


def model_hash(root: Path = ROOT) -> str:
    import rasa

    digest = hashlib.sha256(f"rasa {rasa.__version__}".encode())
    for name in INPUTS:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def model_path(root: Path = ROOT) -> Path:
    return root / "models" / f"model-{model_hash(root)}.tar.gz"


def ensure_model(root: Path = ROOT) -> Path:
    """The trained model for the current inputs, training it first if needed."""
    path = model_path(root)
    timing = root / "models" / "training-times.json"
    if path.exists():
        print(f"model up to date: {path.relative_to(root)}", flush=True)
        return path
    print("training the model (inputs changed)...", flush=True)
    started = time.monotonic()
    subprocess.run(
        [
            str(Path(sys.executable).with_name("rasa")),
            "train",
            "--config",
            "config.yml",
            "--domain",
            "domain.yml",
            "--data",
            "data",
            "--out",
            "models",
            "--fixed-model-name",
            path.name.removesuffix(".tar.gz"),
        ],
        cwd=root,
        check=True,
    )
    seconds = round(time.monotonic() - started, 1)
    times = json.loads(timing.read_text()) if timing.exists() else {}
    times[path.name] = seconds
    timing.write_text(json.dumps(times, indent=2))
    print(f"trained in {seconds} s: {path.relative_to(root)}", flush=True)
    return path


def training_seconds(root: Path = ROOT) -> float | None:
    timing = root / "models" / "training-times.json"
    if not timing.exists():
        return None
    return json.loads(timing.read_text()).get(model_path(root).name)
