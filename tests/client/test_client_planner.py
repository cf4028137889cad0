"""The client planner (opencc_cm_client.planner): which calls one classify makes and how answers are put back,
as pure functions - no server needed."""
import numpy as np
import pytest

from opencc_cm_client.planner import chunks, plan_ids, plan_texts, plan_tokenized, routed_as_text
from opencc_cm_client.errors import InvalidRequestError
from opencc_cm_client.answers import Answer
from opencc_cm_client.server_info import ServerContractError, ServerInfo
from opencc_cm_contract import (ATTENTION_MASK, FLAGGED, IDS_ENSEMBLE, INPUT_IDS, LABEL_FLAGS, SCORES, TEXT,
                                TEXT_ENSEMBLE, TOKEN_COUNT)

LABELS = ("CBRN", "Cyber")


def _info(model, policy="windows", max_batch=3, max_tokens=4):
    return ServerInfo(model_name=model, model_version="1", max_batch_size=max_batch, labels=LABELS,
                      profiles={"default": (0.5, 0.5)}, max_tokens=max_tokens, vocab_size=100, pad_token_id=0,
                      tokenizer_sha256="x", long_input_policy=policy, checkpoint="c")


def _answer(scores):
    """What a server answers for rows with these CBRN scores (Cyber always 0)."""
    s = np.array([[x, 0.0] for x in scores], dtype=np.float32)
    flags = s >= 0.5
    return Answer({SCORES: s, LABEL_FLAGS: flags, FLAGGED: flags.any(axis=1).reshape(-1, 1),
                   TOKEN_COUNT: np.arange(len(scores), dtype=np.int64).reshape(-1, 1)}, "1")


def test_chunks_cover_every_index_once_in_order():
    assert chunks(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert chunks(3, 3) == [(0, 3)] and chunks(0, 3) == []
    with pytest.raises(ValueError):
        chunks(3, 0)


def test_texts_go_in_chunks_of_the_max_batch():
    plan = plan_texts(["a", "b", "c", "d"], _info(TEXT_ENSEMBLE))
    assert [c.model for c in plan.calls] == [TEXT_ENSEMBLE] * 2
    assert [c.inputs[TEXT].reshape(-1).tolist() for c in plan.calls] == [[b"a", b"b", b"c"], [b"d"]]
    assert plan.positions == ((0, 1, 2), (3,)) and plan.size == 4


def test_long_texts_go_as_text_one_per_call_and_results_come_back_in_input_order():
    ids_info, text_info = _info(IDS_ENSEMBLE), _info(TEXT_ENSEMBLE)
    texts = ["s0", "LONG1", "s2", "s3", "LONG4", "s5"]
    ids = [[1], [1] * 9, [2, 3], [4], [5] * 5, [6, 7, 8]]
    assert routed_as_text(ids, ids_info) == [1, 4]
    plan = plan_tokenized(texts, ids, ids_info, text_info)
    assert [c.model for c in plan.calls] == [IDS_ENSEMBLE, IDS_ENSEMBLE, TEXT_ENSEMBLE, TEXT_ENSEMBLE]
    assert plan.positions == ((0, 2, 3), (5,), (1,), (4,))
    first = plan.calls[0].inputs
    assert first[INPUT_IDS].tolist() == [[1, 0], [2, 3], [4, 0]]  # right-padded to the longest row
    assert first[ATTENTION_MASK].tolist() == [[1, 0], [1, 1], [1, 0]]
    assert [c.inputs[TEXT].reshape(-1).tolist() for c in plan.calls[2:]] == [[b"LONG1"], [b"LONG4"]]
    # the answers of each call land on the inputs it carried
    answers = [_answer([0.0, 0.2, 0.3]), _answer([0.5]), _answer([0.1]), _answer([0.4])]
    results = plan.results(answers, "default")
    assert [r.score("CBRN") for r in results] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert [r.flagged for r in results] == [False] * 5 + [True]
    assert [r.model_name for r in results] == [IDS_ENSEMBLE, TEXT_ENSEMBLE, IDS_ENSEMBLE, IDS_ENSEMBLE,
                                               TEXT_ENSEMBLE, IDS_ENSEMBLE]


def test_all_long_texts_make_only_text_calls():
    plan = plan_tokenized(["L0", "L1"], [[1] * 5, [2] * 6], _info(IDS_ENSEMBLE), _info(TEXT_ENSEMBLE))
    assert [c.model for c in plan.calls] == [TEXT_ENSEMBLE] * 2 and plan.positions == ((0,), (1,))


def test_under_reject_a_long_text_is_refused_locally_by_its_input_index():
    ids_info = _info(IDS_ENSEMBLE, policy="reject")
    ids = [[1], [2], [3], [4], [1] * 9]
    assert routed_as_text(ids, ids_info) == []
    with pytest.raises(InvalidRequestError, match=r"text\[4\]: 9 tokens, above max_tokens 4") as err:
        plan_tokenized(["a"] * 5, ids, ids_info)
    assert err.value.code == "LOCAL"


def test_local_refusals_name_the_input_index_even_after_long_texts_are_taken_out():
    ids = [[1] * 9, [2], [3, 400]]  # text[2] has a token id outside the vocabulary
    with pytest.raises(InvalidRequestError, match=r"text\[2\]: token id 400 outside \[0, 100\)"):
        plan_tokenized(["L", "a", "b"], ids, _info(IDS_ENSEMBLE), _info(TEXT_ENSEMBLE))
    with pytest.raises(ValueError, match="text ensemble"):
        plan_tokenized(["L", "a"], [[1] * 9, [2]], _info(IDS_ENSEMBLE), None)


def test_answers_that_do_not_fit_the_plan_are_refused():
    plan = plan_ids([[1], [2], [3], [4]], _info(IDS_ENSEMBLE))
    with pytest.raises(ValueError, match="1 answers for 2 calls"):
        plan.results([_answer([0.1, 0.2, 0.3])], "default")
    with pytest.raises(ServerContractError, match="for 1 prompts"):
        plan.results([_answer([0.1, 0.2, 0.3]), _answer([0.1, 0.2])], "default")
