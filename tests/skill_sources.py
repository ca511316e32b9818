"""Skills the channel tests drop into a workspace: a reply that carries files, the same for
every platform (each test then checks how its platform sends them)."""

from __future__ import annotations

_REPORT = '''\
from pathlib import Path
from moltbot_sdk import Skill, context

class Report(Skill):
    @context.handle(command="/report")
    def report(self, msg):
        out = Path("files/out/report.txt")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("report for " + msg["text"])
        return {"reply": "here it is", "files": [str(out)]}
'''

_CHART = '''
    @context.handle(command="/chart")
    def chart(self, msg):
        out = Path("files/out/chart.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(PICTURE)
        return {"reply": REPLY, "files": [str(out)]}
'''


def report_skill(chart: bytes | None = None, chart_reply: str = "") -> str:
    """`/report` answers "here it is" with a text file; with `chart` (a picture's bytes),
    `/chart` answers `chart_reply` with that picture too."""
    if chart is None:
        return _REPORT
    return _REPORT + _CHART.replace("PICTURE", repr(chart)).replace("REPLY", repr(chart_reply))
