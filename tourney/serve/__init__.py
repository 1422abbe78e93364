"""`tourney serve`: the routed student/teacher pair as one OpenAI-compatible endpoint.

The top layer beside tourney.cli (cli -> serve -> routers -> harness -> models):

- config.py     ServeConfig: every option of one server, range-checked
- schemas.py    request and response bodies (pydantic), the OpenAI error shape
- adapter.py    the one module that knows today's routers API: a request becomes "answer these
                questions in this mode within this deadline", a cascade record becomes a reply
- lanes.py      per-model queues: dynamic batches for in-process models, bounded concurrency
                for upstream servers
- engine.py     one question through the modes, with the deadline, retries and fallbacks
- metrics.py    prometheus-client counters, gauges and histograms
- requestlog.py every answered request as result rows (tourney report / route eval / regress)
- stream.py     server-sent events for `stream: true`, the routing decision first
- app.py        the FastAPI app: routes, auth, body limit, errors
- server.py     uvicorn with a graceful drain on SIGTERM
"""
