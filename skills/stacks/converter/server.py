"""The converter stack's service: POST /convert {"file": "inbox/report.docx", "to": "txt"}
converts /files/<file> with LibreOffice into /files/converted/ and answers {"output":
"converted/report.txt"}; GET /health answers ok. Runs inside the container, stdlib only."""

import json
import subprocess
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

FILES = Path("/files")
FORMATS = {"txt": "txt:Text (encoded):UTF8", "pdf": "pdf", "csv": "csv", "html": "html"}


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.answer(200, {"ok": True}) if self.path == "/health" else self.answer(404, {})

    def do_POST(self):
        if self.path != "/convert":
            return self.answer(404, {"error": "POST /convert"})
        try:
            asked = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            source = (FILES / asked["file"]).resolve()
            to = FORMATS[asked.get("to", "txt")]
        except (ValueError, KeyError, TypeError):
            return self.answer(400, {"error": 'send {"file": "<path in files/>", "to": '
                                              '"txt|pdf|csv|html"}'})
        if not source.is_relative_to(FILES) or not source.is_file():
            return self.answer(404, {"error": f"no file {asked['file']} in files/"})
        out = FILES / "converted"
        done = subprocess.run(["soffice", "--headless", "--convert-to", to, "--outdir",
                               str(out), str(source)], capture_output=True, text=True,
                              timeout=120)
        made = out / f"{source.stem}.{to.split(':')[0]}"
        if done.returncode != 0 or not made.is_file():
            return self.answer(500, {"error": (done.stderr or done.stdout)[-500:]})
        self.answer(200, {"output": str(made.relative_to(FILES))})


HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
