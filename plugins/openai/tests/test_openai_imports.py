"""The first request imports nothing: httpx's lazy imports happen when the provider is built.

A module imported during a turn blocks the event loop (every session on it) for as long as
the import takes: 60-400 ms for httpcore and anyio with a cold bytecode cache.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import asyncio, json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
import threading

class Reply(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Reply)
threading.Thread(target=server.serve_forever, daemon=True).start()

from threadline.ids import new_id
from threadline.models import Message
from threadline.runtime.providers import ChatRequest
from threadline_openai.provider import OpenAIProvider

provider = OpenAIProvider(base_url=f"http://127.0.0.1:{server.server_port}/v1", model="m")
before = set(sys.modules)

async def main():
    message = Message(session_id=new_id(), tenant_id=new_id(), role="user", content="hello")
    request = ChatRequest(model="m", messages=[message])
    return [event async for event in provider.stream(request)]

events = asyncio.run(main())
print(json.dumps({"events": len(events), "imported": sorted(set(sys.modules) - before)}))
"""


def test_the_first_request_imports_no_transport_module() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["events"] > 0
    late = [m for m in result["imported"] if m.split(".")[0] in {"httpcore", "anyio", "h11"}]
    assert late == []
