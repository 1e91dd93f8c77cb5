"""A stdio MCP server for the host bench's log-routing rows (standard library only).

It answers `initialize`, `ping`, `logging/setLevel`, `tools/list` and
`tools/call` of four tools:

- `echo` (`message`): answers "Echo: <message>" at once;
- `emit` (`count`, `level`): writes `count` `notifications/message` lines at
  `level` to stdout as fast as it can, then answers;
- `hold`: answers nothing until `release` (a call left pending);
- `release`: answers every held call, then itself.

It reads one line at a time and does one thing at a time: a request sent
while it emits is read once the emission is written (the host reads stdout
as fast as it routes, so that is when the host has routed it). It exits when
its stdin closes.
"""

import json
import sys


def write(message):
    sys.stdout.write(json.dumps(message, separators=(",", ":")))
    sys.stdout.write("\n")


def answer(request_id, result):
    write({"jsonrpc": "2.0", "id": request_id, "result": result})


def text(value):
    return {"content": [{"type": "text", "text": value}]}


TOOLS = [
    {
        "name": "echo",
        "description": "Answers with its message.",
        "inputSchema": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
        },
    },
    {
        "name": "emit",
        "description": "Writes `count` notifications/message lines at `level`, then answers.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "count": {"type": "integer"},
                "level": {"type": "string"},
            },
        },
    },
    {
        "name": "hold",
        "description": "Is answered only when `release` is called.",
        "inputSchema": {"type": "object"},
    },
    {
        "name": "release",
        "description": "Answers every held call.",
        "inputSchema": {"type": "object"},
    },
]


def call(request_id, params, held):
    name = params.get("name")
    arguments = params.get("arguments") or {}
    if name == "echo":
        answer(request_id, text("Echo: " + str(arguments.get("message", ""))))
    elif name == "emit":
        count = int(arguments.get("count", 1))
        level = str(arguments.get("level", "info"))
        for i in range(count):
            write(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/message",
                    "params": {
                        "level": level,
                        "logger": "bench",
                        "data": "log line %d of %d" % (i + 1, count),
                    },
                }
            )
        answer(request_id, text("emitted %d" % count))
    elif name == "hold":
        held.append(request_id)
        return
    elif name == "release":
        for held_id in held:
            answer(held_id, text("released"))
        answer(request_id, text("released %d" % len(held)))
        held.clear()
    else:
        write(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {"code": -32602, "message": "unknown tool %r" % name},
            }
        )


def main():
    held = []
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or "method" not in message:
            continue  # an answer, or a batch: nothing this server asked for
        method = message["method"]
        request_id = message.get("id")
        if request_id is None:
            continue  # a notification
        params = message.get("params") or {}
        if method == "initialize":
            answer(
                request_id,
                {
                    "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                    "capabilities": {"logging": {}, "tools": {}},
                    "serverInfo": {"name": "bench-log-server", "version": "0"},
                },
            )
        elif method in ("ping", "logging/setLevel"):
            answer(request_id, {})
        elif method == "tools/list":
            answer(request_id, {"tools": TOOLS})
        elif method == "tools/call":
            call(request_id, params, held)
        else:
            write(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": {"code": -32601, "message": "unknown method %r" % method},
                }
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
