"""Provider clients (httpx, OpenAI, SMTP): each maps its provider's failures to typed errors."""
