"""Local stand-ins for AlphaVantage, NewsAPI and OpenAI: seeded, deterministic, with fault injection.

One Starlette app per provider (`alphavantage.make_app`, `newsapi.make_app`,
`openai.make_app`), served over real HTTP on loopback by `serve.serve_asgi`, so the real
clients are exercised end to end. Each app's `app.state.sim` (and its `/_sim/*` endpoints)
injects faults and reports what it was asked; see `faults.py`.
"""
