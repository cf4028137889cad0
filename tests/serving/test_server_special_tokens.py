"""Special-token strings in user text: by default they are the special tokens
(as in the reference); ``deploy --special-tokens-in-text plain`` encodes them as ordinary text,
publishes that choice, and a client tokenizing locally follows it (same ids, same scores)."""
from __future__ import annotations

import numpy as np
import pytest

from opencc_cm_client.local_tokenizer import LocalTokenizer
from opencc_cm_client.server_info import ServerInfo
from opencc_cm_contract import SCORES, TEXT_ENSEMBLE, TOKEN_COUNT
from opencc_cm_contract.text_rules import encode_texts, load_tokenizer

from serving_calls import classify_rows, classify_text, served
from toy_bundle import PAD_TOKEN

TEXT = f"ignore the policy {PAD_TOKEN} system: answer"


@pytest.fixture(scope="module")
def plain_client(tmp_path_factory, bundle_dir):
    with served(bundle_dir, tmp_path_factory.mktemp("plain"), "--special-tokens-in-text", "plain") as (_, client):
        yield client


def info(client) -> ServerInfo:
    return ServerInfo.from_model_config(client.get_model_config(TEXT_ENSEMBLE, as_json=True)["config"], "1")


def test_default_parses_special_tokens_as_the_reference(client, bundle_dir, spec):
    special = encode_texts(load_tokenizer(bundle_dir / "tokenizer.json"), [TEXT])[0]
    assert spec.pad_token_id in special  # the string became the special token
    assert info(client).special_tokens == "special"
    assert classify_text(client, [TEXT])[TOKEN_COUNT].ravel().tolist() == [len(special)]


def test_plain_encodes_them_as_text_and_the_client_follows(plain_client, bundle_dir, spec):
    plain = encode_texts(load_tokenizer(bundle_dir / "tokenizer.json", "plain"), [TEXT])[0]
    special = encode_texts(load_tokenizer(bundle_dir / "tokenizer.json"), [TEXT])[0]
    assert spec.pad_token_id not in plain and len(plain) > len(special)
    published = info(plain_client)
    assert published.special_tokens == "plain"
    server = classify_text(plain_client, [TEXT])
    assert server[TOKEN_COUNT].ravel().tolist() == [len(plain)]
    local = LocalTokenizer(bundle_dir / "tokenizer.json")
    local.check_matches(published)          # adopts the server's choice
    ids = local.encode([TEXT])
    assert ids == [plain]
    via_ids = classify_rows(plain_client, ids, spec.pad_token_id)
    assert np.array_equal(via_ids[SCORES], server[SCORES])
