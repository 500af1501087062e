"""Encryption of Temporal payloads at rest in the server's history (see payload_cipher)."""
