"""Tiny JSON client for the control endpoints of the metadata server and the fault proxy."""
from __future__ import annotations

import json
import urllib.request


class Control:
    def __init__(self, url: str) -> None:
        self.url = url

    def set(self, **config) -> dict:
        request = urllib.request.Request(self.url, data=json.dumps(config).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url, timeout=10) as resp:
            return json.loads(resp.read())
