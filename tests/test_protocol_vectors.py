"""The committed test vectors are what the encoder writes, and the decoder agrees with the JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from avatar_relay.protocol import (
    MESSAGE_TYPES,
    Fragment,
    ProtocolError,
    Reassembler,
    UnsupportedVersionError,
    decode_any,
    decode_packet,
)

VECTORS = Path(__file__).parent / "vectors"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _load_generator()
DOC: dict[str, Any] = json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))
CASES = DOC["vectors"]


def test_committed_files_equal_generator_output() -> None:
    doc, files = GENERATOR.build()
    assert GENERATOR.render(doc) == (VECTORS / "vectors.json").read_text(encoding="utf-8")
    for name, data in files.items():
        assert (VECTORS / name).read_bytes() == data, name
    assert {p.name for p in VECTORS.glob("*.bin")} == set(files)


def test_vectors_cover_every_message_type_and_outcome() -> None:
    ok_types = {c["message"]["t"] for c in CASES if c["expect"] == "ok"}
    assert ok_types == set(MESSAGE_TYPES.values())
    assert {c["expect"] for c in CASES} == {"ok", "ignored", "error"}
    assert {c.get("error") for c in CASES if c["expect"] == "error"} == {
        "protocol",
        "unsupported_version",
    }
    assert any(len(c["files"]) > 2 and c["expect"] == "ok" for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_decoder_matches_description(case: dict[str, Any]) -> None:
    packets = [(VECTORS / name).read_bytes() for name in case["files"]]
    receiver = Reassembler()
    for packet in packets[:-1]:
        assert receiver.push(packet) is None
    if case["expect"] == "error":
        with pytest.raises(ProtocolError) as info:
            receiver.push(packets[-1])
        unsupported = isinstance(info.value, UnsupportedVersionError)
        assert unsupported == (case["error"] == "unsupported_version")
        assert receiver.pending == 0
        return
    message = receiver.push(packets[-1])
    if case["expect"] == "ignored":
        assert message is None
        return
    assert message is not None
    assert GENERATOR.message_json(message) == case["message"]
    if len(packets) == 1 and not isinstance(decode_any(packets[0]), Fragment):
        assert decode_packet(packets[0]) == message


def test_error_vectors_leave_no_partial_state() -> None:
    receiver = Reassembler()
    for case in CASES:
        if case["expect"] == "error" and len(case["files"]) == 1:
            with pytest.raises(ProtocolError):
                receiver.push((VECTORS / case["files"][0]).read_bytes())
    assert receiver.pending == 0 and receiver.buffered_bytes == 0
