"""The payload codec (codec.py, deallens/security/payload_cipher.py) and its codec server.

With TEMPORAL_CODEC_KEYS set, nothing a workflow carries reaches Temporal's history in clear;
keys rotate by id; tampering is detected; histories recorded in clear still replay; and the
Web UI's remote codec endpoint decodes for a caller with the token, and for nobody else.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from codec import PAYLOAD_TOO_LARGE, data_converter
from codec_server import create_codec_app
from deallens.config import ConfigError, Settings, load_settings
from deallens.security.codec_auth import SESSION_COOKIE, bearer_token_matches, new_session, session_valid
from deallens.security.payload_cipher import CodecError, CodecIntegrityError, CodecKeyError
from deallens.sim.serve import serve_asgi
from temporal_client import DATA_CONVERTER, interceptors
from tests.codec_support import EchoInput, EchoResult, EchoWorkflow, echo
from tests.conftest import HISTORIES, TEMPORAL_CLI
from worker import WORKFLOWS

UI_ORIGIN = "http://localhost:8233"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


K1, K2 = new_key(), new_key()
TOKEN = secrets.token_hex(24)


def codec_settings(keys: str | None = f"k2:{K2},k1:{K1}", **overrides: Any) -> Settings:
    return load_settings(
        _env_file=None, temporal_codec_keys=keys, temporal_codec_server_token=TOKEN, **overrides
    )


def canary() -> str:
    return f"CANARY-{secrets.token_hex(8)}"


# ------------------------------------------------------------------ the codec itself


async def test_a_value_round_trips_encrypted_under_the_active_key() -> None:
    converter = data_converter(codec_settings())
    secret = canary()
    (payload,) = await converter.encode([EchoInput(note=secret)])
    assert payload.metadata["encoding"] == b"binary/encrypted"
    assert payload.metadata["encryption-key-id"] == b"k2"
    assert secret.encode() not in payload.SerializeToString()
    # Two encryptions of one value differ (a fresh nonce each time).
    (again,) = await converter.encode([EchoInput(note=secret)])
    assert again.data != payload.data
    (value,) = await converter.decode([payload], [EchoInput])
    assert value == EchoInput(note=secret)


async def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    before = data_converter(codec_settings(f"k1:{K1}"))
    after = data_converter(codec_settings(f"k2:{K2},k1:{K1}"))
    (old,) = await before.encode([EchoInput(note="written under k1")])
    assert old.metadata["encryption-key-id"] == b"k1"
    assert await after.decode([old], [EchoInput]) == [EchoInput(note="written under k1")]
    (new,) = await after.encode([EchoInput(note="written under k2")])
    assert new.metadata["encryption-key-id"] == b"k2"
    # k1 dropped too early: the error names the key the payload needs.
    dropped = data_converter(codec_settings(f"k2:{K2}"))
    with pytest.raises(CodecKeyError, match=r"key id 'k1'.*TEMPORAL_CODEC_KEYS does not hold \(it holds k2\)"):
        await dropped.decode([old], [EchoInput])


async def test_a_tampered_payload_fails_authentication_naming_its_key() -> None:
    converter = data_converter(codec_settings())
    (payload,) = await converter.encode([EchoInput(note="amount: 100")])
    flipped = Payload()
    flipped.CopyFrom(payload)
    data = bytearray(flipped.data)
    data[20] ^= 0x01
    flipped.data = bytes(data)
    with pytest.raises(CodecIntegrityError, match=r"key id 'k2' failed authentication"):
        await converter.decode([flipped], [EchoInput])
    # The key id is bound to the ciphertext: relabelling it under the other key fails too.
    relabelled = Payload()
    relabelled.CopyFrom(payload)
    relabelled.metadata["encryption-key-id"] = b"k1"
    with pytest.raises(CodecIntegrityError, match=r"key id 'k1' failed authentication"):
        await converter.decode([relabelled], [EchoInput])
    truncated = Payload()
    truncated.CopyFrom(payload)
    truncated.data = payload.data[:10]
    with pytest.raises(CodecIntegrityError, match="truncated"):
        await converter.decode([truncated], [EchoInput])


async def test_unencrypted_payloads_pass_through_and_encrypted_ones_need_keys() -> None:
    (plain,) = await DATA_CONVERTER.encode([EchoInput(note="recorded before the codec")])
    assert plain.metadata["encoding"] == b"json/plain"
    assert await data_converter(codec_settings()).decode([plain], [EchoInput]) == [
        EchoInput(note="recorded before the codec")
    ]
    (sealed,) = await data_converter(codec_settings()).encode([EchoInput(note="x")])
    with pytest.raises(CodecError, match=r"encrypted \(key id 'k2'\) but TEMPORAL_CODEC_KEYS is not set"):
        await DATA_CONVERTER.decode([sealed], [EchoInput])


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("k1", "entry 1 is not id:base64"),
        ("k1:not base64!", "key 'k1' is not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "key 'k1' is 5 bytes, expected 32"),
        (f"k1:{K1},k1:{K2}", "key id 'k1' is listed twice"),
        ("bad id:" + K1, "entry 1 is not id:base64"),
    ],
)
def test_bad_codec_keys_stop_start_up_with_one_line_and_no_key_material(keys: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, temporal_codec_keys=keys)
    text = str(raised.value)
    assert text.startswith("TEMPORAL_CODEC_KEYS: ") and message in text and "\n" not in text
    assert K1 not in text and K2 not in text


def test_the_bearer_token_check() -> None:
    assert bearer_token_matches(f"Bearer {TOKEN}", TOKEN)
    assert bearer_token_matches(f"bearer {TOKEN}", TOKEN)
    assert not bearer_token_matches(f"Bearer {TOKEN[:-1]}", TOKEN)
    assert not bearer_token_matches(f"Basic {TOKEN}", TOKEN)
    assert not bearer_token_matches(TOKEN, TOKEN)
    assert not bearer_token_matches(None, TOKEN)
    assert not bearer_token_matches("Bearer ", "")


def test_a_session_is_signed_with_the_token_and_expires() -> None:
    session = new_session(TOKEN, now=1_000_000)
    assert TOKEN not in session
    assert session_valid(session, TOKEN, now=1_000_000 + 3600)
    assert not session_valid(session, TOKEN, now=1_000_000 + 13 * 3600)  # 12 hours
    assert not session_valid(session, TOKEN + "x", now=1_000_000)  # a new token ends sessions
    expires, _, signature = session.partition(".")
    assert not session_valid(f"{int(expires) + 86400}.{signature}", TOKEN, now=1_000_000)  # extended
    assert not session_valid(f"{expires}.{'0' * len(signature)}", TOKEN, now=1_000_000)
    assert not session_valid(None, TOKEN) and not session_valid("garbage", TOKEN)


def test_the_codec_server_refuses_to_start_open() -> None:
    with pytest.raises(ConfigError, match="TEMPORAL_CODEC_SERVER_TOKEN: not set"):
        create_codec_app(load_settings(_env_file=None, temporal_codec_keys=f"k1:{K1}"))
    with pytest.raises(ConfigError, match="TEMPORAL_CODEC_KEYS: not set"):
        create_codec_app(load_settings(_env_file=None, temporal_codec_server_token=TOKEN))


# ------------------------------------------------------------------ against a real server


@pytest.fixture(scope="module")
async def codec_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server whose client (and so its workers) encrypt."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        data_converter=data_converter(codec_settings()),
        interceptors=interceptors(),
    )
    async with env:
        yield env


def raw_history_bytes(history: WorkflowHistory) -> bytes:
    """The history as the server stores it: protobuf bytes, payload data unencoded."""
    return b"".join(event.SerializeToString() for event in history.events)


async def run_echo(client: Client, task_queue: str, params: EchoInput) -> tuple[EchoResult, WorkflowHistory]:
    async with Worker(client, task_queue=task_queue, workflows=[EchoWorkflow], activities=[echo]):
        handle = await client.start_workflow(
            EchoWorkflow.run, params, id=f"codec-{secrets.token_hex(6)}", task_queue=task_queue
        )
        result = await handle.result()
        return result, await handle.fetch_history()


async def test_no_plaintext_reaches_the_history_and_the_codec_server_decodes_it(
    codec_env: WorkflowEnvironment, task_queue: str
) -> None:
    secret = canary()
    result, history = await run_echo(codec_env.client, task_queue, EchoInput(note=secret))
    assert result == EchoResult(note=secret.upper())

    stored = raw_history_bytes(history)
    for plain in (secret, secret.upper()):
        assert plain.encode() not in stored
        assert plain not in history.to_json()
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    assert started.metadata["encoding"] == b"binary/encrypted"

    # Control: the same run through a client without the codec stores the canary in clear.
    clear_client = await Client.connect(
        codec_env.client.service_client.config.target_host, data_converter=DATA_CONVERTER
    )
    control = canary()
    _, clear_history = await run_echo(clear_client, f"{task_queue}-clear", EchoInput(note=control))
    assert control.encode() in raw_history_bytes(clear_history)

    # The Web UI's view: the codec server, with the token, hands the payloads back decrypted.
    body = json_format.MessageToDict(Payloads(payloads=[started]))
    async with serve_asgi(create_codec_app(codec_settings())) as url, httpx.AsyncClient(base_url=url) as http:
        decoded = await http.post(
            "/decode", json=body, headers={"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}
        )
        assert decoded.status_code == 200, decoded.text
        (payload,) = decoded.json()["payloads"]
        assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
        assert secret in base64.b64decode(payload["data"]).decode()

        for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Basic {TOKEN}"}):
            refused = await http.post("/decode", json=body, headers=headers)
            assert refused.status_code == 401
            assert secret not in refused.text

        # /encode then /decode is the identity (the UI encodes signal and query inputs).
        plain = json_format.MessageToDict(Payloads(payloads=(await DATA_CONVERTER.encode(["signal input"]))))
        encoded = await http.post("/encode", json=plain, headers={"Authorization": f"Bearer {TOKEN}"})
        assert encoded.status_code == 200
        assert base64.b64decode(encoded.json()["payloads"][0]["metadata"]["encoding"]) == b"binary/encrypted"
        back = await http.post("/decode", json=encoded.json(), headers={"Authorization": f"Bearer {TOKEN}"})
        assert back.json() == plain

        bad = await http.post("/decode", content=b'{"payloads": 3}', headers={"Authorization": f"Bearer {TOKEN}"})
        assert bad.status_code == 400 and bad.text.startswith('expected {"payloads": [...]}')


async def test_the_codec_server_answers_the_ui_preflight_and_only_for_its_origin() -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    async with serve_asgi(create_codec_app(codec_settings())) as url, httpx.AsyncClient(base_url=url) as http:
        ok = await http.options("/decode", headers={"Origin": UI_ORIGIN, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == UI_ORIGIN
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        assert ok.headers["access-control-allow-credentials"] == "true"

        foreign = await http.options("/decode", headers={"Origin": "https://evil.example", **preflight})
        assert foreign.status_code == 400
        assert "access-control-allow-origin" not in foreign.headers

        # The refusal itself carries CORS headers, so the UI can show it rather than a network error.
        refused = await http.post("/decode", json={"payloads": []}, headers={"Origin": UI_ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == UI_ORIGIN


async def test_the_web_ui_signs_in_once_and_decodes_with_its_cookie() -> None:
    (sealed,) = await data_converter(codec_settings()).encode(["seen in the UI"])
    body = json_format.MessageToDict(Payloads(payloads=[sealed]))
    async with serve_asgi(create_codec_app(codec_settings())) as url, httpx.AsyncClient(base_url=url) as http:
        form = await http.get("/login")
        assert form.status_code == 200 and 'name="token"' in form.text

        wrong = await http.post("/login", data={"token": TOKEN[:-1]})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        assert (await http.post("/decode", json=body, headers={"Origin": UI_ORIGIN})).status_code == 401

        signed_in = await http.post("/login", data={"token": TOKEN})
        assert signed_in.status_code == 200
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert TOKEN not in cookie
        # What the UI's fetch(..., {credentials: "include"}) sends: the cookie, no Authorization.
        decoded = await http.post("/decode", json=body, headers={"Origin": UI_ORIGIN})
        assert decoded.status_code == 200
        assert decoded.headers["access-control-allow-origin"] == UI_ORIGIN
        assert base64.b64decode(decoded.json()["payloads"][0]["data"]) == b'"seen in the UI"'

        http.cookies.set(SESSION_COOKIE, "9999999999." + "0" * 64)
        assert (await http.post("/decode", json=body, headers={"Origin": UI_ORIGIN})).status_code == 401


async def test_recorded_and_encrypted_histories_replay_with_the_codec_on(
    codec_env: WorkflowEnvironment, task_queue: str
) -> None:
    converter = data_converter(codec_settings())
    replayer = Replayer(workflows=[*WORKFLOWS, EchoWorkflow], data_converter=converter, interceptors=interceptors())
    recorded = sorted(HISTORIES.glob("*.json"))
    assert len(recorded) >= 3
    for path in recorded:  # recorded in clear: decoding passes them through
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"

    _, encrypted = await run_echo(codec_env.client, task_queue, EchoInput(note=canary()))
    result = await replayer.replay_workflow(encrypted, raise_on_replay_failure=False)
    assert result.replay_failure is None, str(result.replay_failure)
    # Without the keys the same history cannot be read: the replay above really decrypted.
    keyless = Replayer(workflows=[EchoWorkflow], data_converter=DATA_CONVERTER, interceptors=interceptors())
    result = await keyless.replay_workflow(encrypted, raise_on_replay_failure=False)
    assert result.replay_failure is not None


async def test_an_oversize_result_fails_once_with_one_line_under_the_codec(
    codec_env: WorkflowEnvironment, task_queue: str
) -> None:
    # Encryption adds a few dozen bytes; the guard measures what the server would receive.
    with pytest.raises(WorkflowFailureError) as raised:
        await run_echo(codec_env.client, task_queue, EchoInput(note="big", result_chars=2_100_000))
    cause = raised.value.cause.cause  # WorkflowFailureError <- ActivityError <- ApplicationError
    assert isinstance(cause, ApplicationError) and cause.type == PAYLOAD_TOO_LARGE and cause.non_retryable
    assert "activity TestCodecEcho of workflow TestCodecEcho" in cause.message
    assert "over Temporal's 2,097,152-byte (2 MiB) limit" in cause.message


async def test_the_keys_and_the_token_appear_in_no_history_log_or_error(
    codec_env: WorkflowEnvironment, task_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    _, history = await run_echo(codec_env.client, task_queue, EchoInput(note=canary()))
    seen.append(history.to_json())
    seen.append(raw_history_bytes(history).decode("latin-1"))
    settings = codec_settings()
    seen += [repr(settings), str(settings.model_dump()), settings.model_dump_json()]
    (sealed,) = await data_converter(settings).encode(["x"])
    for converter in (DATA_CONVERTER, data_converter(codec_settings(f"k9:{new_key()}"))):
        with pytest.raises(CodecError) as raised:
            await converter.decode([sealed])
        seen.append(str(raised.value))
    for bad in (f"k1:{K1[:-4]}", f"k1:{K1},k1:{K2}"):
        with pytest.raises(ConfigError) as config_error:
            load_settings(_env_file=None, temporal_codec_keys=bad)
        seen.append(str(config_error.value))
    async with serve_asgi(create_codec_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        refused = await http.post("/decode", json={"payloads": []}, headers={"Authorization": f"Bearer {TOKEN[:-2]}"})
        seen.append(refused.text + str(refused.headers))
    seen += [record.getMessage() + str(record.__dict__) for record in caplog.records]
    text = "\n".join(seen)
    assert len(text) > 1000
    for secret in (K1, K2, TOKEN, K1[:-4]):
        assert secret not in text
