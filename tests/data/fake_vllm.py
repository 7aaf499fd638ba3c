"""A stand-in for the `vllm` CLI, for testing `quantlab up`'s supervision where vLLM can't
run (no GPU). `fake_vllm.py serve MODEL --port N …` answers /health after a short start-up;
MODEL "crash" prints a traceback-like line and exits 1, MODEL "hang" never gets healthy.
Its log says its argv and the CUDA_VISIBLE_DEVICES it was given (the placement)."""

from __future__ import annotations

import http.server
import os
import sys
import time


def main() -> None:
    args = sys.argv[1:]
    assert args[0] == "serve", args
    model = args[1]
    port = int(args[args.index("--port") + 1])
    cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    print(f"INFO fake vllm serving {model} on {port} argv={args}", flush=True)
    print(f"INFO fake vllm CUDA_VISIBLE_DEVICES={cuda}", flush=True)
    if model == "crash":
        print("RuntimeError: CUDA out of memory (fake)", flush=True)
        sys.exit(1)
    time.sleep(0.3)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/health" and model != "hang"
            self.send_response(200 if ok else 503)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
