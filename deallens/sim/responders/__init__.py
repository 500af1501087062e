"""Structured-output responders of the OpenAI stand-in, one module per kind of call.

Each module registers its answers with `deallens.sim.openai.structured_responder(name)`, the
name being the json_schema name the gateway sends (the schema class's name). `make_app`
imports every module here.
"""
