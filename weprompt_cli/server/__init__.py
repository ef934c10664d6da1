"""The HTTP API (`weprompt serve`): WePrompt 1.0's `/generate-response` and an
OpenAI-compatible `/v1/chat/completions`, on the same engine, chat and session store
as the REPL.

Layout:
  settings.py      ServerSettings and Limits (what `weprompt serve` configures)
  ids.py           user_id/discussion_id validation and the session name they map to
  prefix_cache.py  token-prefix hash -> RNN state, LRU bounded by entries and bytes
  worker.py        the worker pool (--max-batch threads over the batched executor; 1: the FIFO worker)
  backend.py       what runs on the worker: session turns and stateless completions (chat.turn)
  schemas.py       request bodies (pydantic)
  errors.py        APIError and the JSON error contract
  sse.py           Server-Sent Events framing
  app.py           the FastAPI application and its routes
  run.py           binding the socket and running uvicorn

fastapi, uvicorn and torch are imported only by the modules that need them; importing
this package itself imports none of them.
"""
