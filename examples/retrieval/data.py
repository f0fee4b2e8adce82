"""A deterministic interactions dataset: users prefer items near 2*user (mod N_ITEMS).

Generated, not shipped, so the repo stays small and every run sees the same rows.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

N_USERS = 40
N_ITEMS = 60


def write_interactions(folder: Path, rows: int = 2400, seed: int = 7) -> Path:
    """Write ``interactions.csv`` (user_id,item_id) into ``folder`` and return its path."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "interactions.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id"])
        for _ in range(rows):
            user = rng.randrange(N_USERS)
            item = (2 * user + int(rng.gauss(0, 2))) % N_ITEMS
            writer.writerow([f"u{user}", f"i{item}"])
    return path
