"""The spool's lines read back as exactly what was appended, whichever encoder wrote them."""
from __future__ import annotations

import math

from trainer_runtime.tracking.spool import ACKED_FILE, SPOOL_FILE, Spool, parse


def test_records_read_back_as_written(tmp_path):
    records = [
        {"k": "m", "key": "step/loss", "value": 0.1 + 0.2, "ts": 1764043200123, "step": 7},
        {"k": "m", "key": "val/top_5 accuracy:x-y.z", "value": 1e-300, "ts": 1, "step": 0},
        {"k": "m", "key": "précision", "value": -3.0, "ts": 2, "step": 1},
        {"k": "m", "key": "loss", "value": 12345678901234567890.0, "ts": 3, "step": 2},
        {"k": "m", "key": "nan", "value": math.nan, "ts": 4, "step": 3},
        {"k": "m", "key": "inf", "value": -math.inf, "ts": 5, "step": 4},
        {"k": "m", "key": 'odd "quoted" \\ key\n', "value": 2.5, "ts": 6, "step": 5},
        {"k": "p", "key": "lr", "value": "0.1"},
        {"k": "t", "key": "note", "value": 'with "quotes"\nand a newline'},
        {"k": "end", "status": "FINISHED", "end_time": 7},
    ]
    spool = Spool(str(tmp_path), {"run_id": "r1"})
    written = spool.append([dict(r) for r in records])
    spool.close()
    content = parse((tmp_path / SPOOL_FILE).read_text(encoding="utf-8"), (tmp_path / ACKED_FILE).read_text())
    assert content.header["run_id"] == "r1"
    assert len(content.records) == len(records)
    for got, want in zip(content.records, written):
        assert got.keys() == want.keys()
        for key in want:
            if isinstance(want[key], float) and math.isnan(want[key]):
                assert math.isnan(got[key])
            else:
                assert got[key] == want[key] and type(got[key]) is type(want[key]), (key, got, want)
