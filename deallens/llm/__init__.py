"""The LLM gateway: every OpenAI call goes through `gateway.LLMGateway` (budget, usage, validation)."""
