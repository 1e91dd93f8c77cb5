"""A small stdio MCP server for the bounds tests. Standard library only.

Tools:
  echo {message}   -> "Echo: <message>"
  big {mib}        -> a text result of `mib` MiB of "x"
  spam {lines}     -> `lines` notifications/message (level "info"), then "spammed <lines>"
  sleep {seconds}  -> answers after `seconds` (in a thread: other requests go on)
"""
import json
import sys
import threading

write_lock = threading.Lock()


def send(message):
    line = json.dumps(message) + "\n"
    with write_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def text(mid, value):
    send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": value}]}})


TOOLS = [
    {"name": name, "inputSchema": {"type": "object"}}
    for name in ("echo", "big", "spam", "sleep")
]

for line in sys.stdin:
    try:
        message = json.loads(line)
    except ValueError:
        continue
    method, mid = message.get("method"), message.get("id")
    if mid is None or method is None:
        continue
    params = message.get("params") or {}
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}, "logging": {}},
            "serverInfo": {"name": "bounds", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name = params.get("name")
        args = params.get("arguments") or {}
        if name == "echo":
            text(mid, "Echo: " + str(args.get("message", "")))
        elif name == "big":
            text(mid, "x" * (int(args.get("mib", 1)) * 1024 * 1024))
        elif name == "spam":
            lines = int(args.get("lines", 1))
            for i in range(lines):
                send({"jsonrpc": "2.0", "method": "notifications/message",
                      "params": {"level": "info", "data": "line %d" % i}})
            text(mid, "spammed %d" % lines)
        elif name == "sleep":
            threading.Timer(float(args.get("seconds", 1)), text, (mid, "slept")).start()
        else:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "no such tool"}})
    else:
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
