"""Teacher-forced scoring on vLLM: the reference's whole answer, scored by each server.

Shared-prefix agreement stops where the lanes' texts part. vLLM can instead score a
given text: ``/v1/completions`` with ``prompt_logprobs: k`` returns, for every prompt
token, the top-k of the model's distribution there plus that token with its true rank
(``choices[0].prompt_logprobs``: a list, first entry null, each ``{"<id>": {logprob,
rank, decoded_token}}``; vLLM's ``CompletionResponseChoice``). Sending the chat prompt
followed by the reference's answer, as token ids, to both servers gives both
distributions on exactly the same contexts over the whole answer.

The token ids come from vLLM's ``/tokenize`` with the chat template applied: the prompt
with ``add_generation_prompt`` (where the answer starts), and the prompt plus the answer
as an assistant message with ``continue_final_message`` (no end-of-turn after it). Both
servers must tokenize alike (checked), or the positions would not mean the same tokens.
``prompt_logprobs`` above the server's ``--max-logprobs`` (default 20) is refused with a
400 that says so; the lane then falls back to the shared prefix with that note.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from quantlab.agreement.logprobs import TokenDist, parse_prompt_logprobs
from quantlab.client import LaneClient, server_message


class TeacherError(Exception):
    """Why teacher forcing was not possible (shown as the agreement's note)."""


#: Answer positions scored at most. vLLM computes the whole vocabulary's logits for every
#: prompt position it scores (40,000 positions of a 150K vocabulary: ~24 GB), and its top-k
#: answer is ~1.2 KB a position, parsed here in one piece while the GIL is held: 4,096
#: positions keep both in bounds (~5 MB, ~25 ms). The agreement says when it was cut.
MAX_POSITIONS = 4096

#: Answers longer than this (bytes) are parsed off the event loop.
_BIG_ANSWER = 256 * 1024


async def _post(client: LaneClient, path: str, body: dict[str, Any]) -> Any:
    if client.endpoint.model:
        body = {"model": client.endpoint.model, **body}
    headers = {"Content-Type": "application/json", **client._auth()}
    try:
        req = client._http.build_request("POST", path, content=orjson.dumps(body), headers=headers)
        resp = await client._send(req, stream=False)
    except Exception as exc:  # httpx errors and the client's _NoAnswer
        raise TeacherError(f"{client.name} {path}: {exc!r:.200}") from exc
    if resp.status_code >= 400:
        msg, _ = server_message(resp.content)
        raise TeacherError(f"{client.name} {path}: HTTP {resp.status_code}: {msg[:200]}")
    try:
        if len(resp.content) > _BIG_ANSWER:  # prompt_logprobs of a long answer: ~MBs
            return await asyncio.to_thread(orjson.loads, resp.content)
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError as exc:
        raise TeacherError(f"{client.name} {path}: answer is not JSON") from exc


async def _ids(client: LaneClient, body: dict[str, Any]) -> list[int]:
    ans = await _post(client, "/tokenize", body)
    tokens = ans.get("tokens") if isinstance(ans, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
        raise TeacherError(f"{client.name} /tokenize: no token ids in the answer")
    return tokens


async def answer_ids(
    client: LaneClient, messages: list[dict[str, str]], answer: str
) -> tuple[list[int], int]:
    """(ids of prompt + answer, index where the answer starts), by ``client``'s tokenizer."""
    prompt = await _ids(client, {"messages": messages, "add_generation_prompt": True})
    whole = await _ids(
        client,
        {
            "messages": [*messages, {"role": "assistant", "content": answer}],
            "add_generation_prompt": False,
            "continue_final_message": True,
        },
    )
    if whole[: len(prompt)] != prompt or len(whole) <= len(prompt):
        raise TeacherError("the chat template does not put the answer after the prompt")
    return whole, len(prompt)


async def score(client: LaneClient, ids: list[int], start: int, k: int) -> list[TokenDist]:
    """The server's top-k distribution at every answer position of ``ids``."""
    body = {"prompt": ids, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": k}
    ans = await _post(client, "/v1/completions", body)
    choices = ans.get("choices") if isinstance(ans, dict) else None
    pl = choices[0].get("prompt_logprobs") if choices and isinstance(choices[0], dict) else None
    if not isinstance(pl, list):
        raise TeacherError(f"{client.name}: no prompt_logprobs in the completion")
    # In a thread: ~40 us a position, over a second of a TUI's event loop for a
    # 16,000-token answer (benchmarks/ui_lag.py showed it as a 1.8 s freeze).
    dists = await asyncio.to_thread(parse_prompt_logprobs, pl, ids, start)
    if not dists:
        raise TeacherError(f"{client.name}: prompt_logprobs held none of the answer's tokens")
    return dists


async def same_tokenizer(a: LaneClient, b: LaneClient, text: str) -> bool:
    """True when both servers turn ``text`` into the same ids."""
    ia, ib = await asyncio.gather(
        _ids(a, {"prompt": text, "add_special_tokens": False}),
        _ids(b, {"prompt": text, "add_special_tokens": False}),
    )
    return ia == ib
