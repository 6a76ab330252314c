"""A model folder's vocabulary: WordPiece's `vocab.txt` (or, without one, the WordPiece
model of a fast tokenizer's `tokenizer.json`, as Transformers 5 saves BERT) or a
SentencePiece model (ALBERT), checked against the embedding rows."""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import sentencepiece

from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.errors import PowerBertError

# SentencePiece model file names: Hugging Face's, then Google's ALBERT release's.
SENTENCEPIECE_FILES = ("spiece.model", "30k-clean.model")


TOKENIZER_JSON = "tokenizer.json"
# What the in-graph `BertTokenizer` implements of a `tokenizer.json`.
_WORDPIECE_SETTINGS = {("normalizer", "type"): "BertNormalizer",
                       ("normalizer", "clean_text"): True,
                       ("normalizer", "handle_chinese_chars"): True,
                       ("pre_tokenizer", "type"): "BertPreTokenizer",
                       ("model", "type"): "WordPiece", ("model", "unk_token"): "[UNK]",
                       ("model", "continuing_subword_prefix"): "##",
                       ("model", "max_input_chars_per_word"): 100}


def read_wordpiece_vocabulary(folder: Path, config: EncoderConfig) -> tuple[Path, list[str]]:
    """(path of `vocab.txt`, its tokens); the token count must equal the embedding rows.

    Without `vocab.txt`, the tokens come from `tokenizer.json` (`read_tokenizer_json`),
    written to a temporary `vocab.txt` that lives as long as the process.
    """
    path = source = folder / "vocab.txt"
    if path.is_file():
        tokens = path.read_text(encoding="utf-8").splitlines()
    elif (folder / TOKENIZER_JSON).is_file():
        source = folder / TOKENIZER_JSON
        tokens = read_tokenizer_json(source)
        path = Path(tempfile.mkdtemp(prefix="power_bert_vocab-")) / "vocab.txt"
        atexit.register(shutil.rmtree, path.parent, ignore_errors=True)
        path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    else:
        raise PowerBertError(f"{folder}: no vocab.txt (nor a {TOKENIZER_JSON})")
    if len(tokens) != config.vocabulary_size:
        raise PowerBertError(f"{source} has {len(tokens)} tokens but the model's vocab_size "
                             f"(embedding rows) is {config.vocabulary_size}")
    return path, tokens


def read_tokenizer_json(path: Path) -> list[str]:
    """The WordPiece tokens of a fast BERT tokenizer's `tokenizer.json`, in id order.

    Raises:
        PowerBertError: for a tokenizer that is not BERT's WordPiece with the settings
            `BertTokenizer` implements (naming the first setting that differs), or for
            a vocabulary whose ids are not 0..V-1.
    """
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PowerBertError(f"{path}: invalid JSON ({error})") from None
    for (part, key), expected in _WORDPIECE_SETTINGS.items():
        found = (spec.get(part) or {}).get(key)
        if found != expected:
            raise PowerBertError(f"{path}: {part}.{key} is {found!r}; only BERT WordPiece "
                                 f"tokenizers ({part}.{key} {expected!r}) are supported")
    normalizer = spec["normalizer"]
    if normalizer.get("strip_accents") not in (None, bool(normalizer.get("lowercase"))):
        raise PowerBertError(f"{path}: strip_accents={normalizer['strip_accents']} with "
                             f"lowercase={normalizer.get('lowercase')} is not supported "
                             "(accents are stripped exactly when lower-casing)")
    vocab = spec["model"].get("vocab") or {}
    tokens = sorted(vocab, key=vocab.get)
    if [vocab[token] for token in tokens] != list(range(len(tokens))):
        raise PowerBertError(f"{path}: the WordPiece ids are not 0..{len(tokens) - 1}")
    bad = [token for token in tokens if token != token.strip() or not token]
    if bad:
        raise PowerBertError(f"{path}: token {bad[0]!r} is empty or has surrounding "
                             "whitespace, which vocab.txt cannot hold")
    special = (spec.get("post_processor") or {}).get("special_tokens") or {}
    unexpected = sorted(set(special) - {"[CLS]", "[SEP]"})
    if unexpected:
        raise PowerBertError(f"{path}: special tokens {', '.join(unexpected)} in the "
                             "post-processor; only [CLS] a [SEP] (b [SEP]) is supported")
    return tokens


def read_sentencepiece_vocabulary(folder: Path,
                                  config: EncoderConfig) -> tuple[Path, list[str]]:
    """(path of the folder's one SentencePiece model, its pieces); the piece count must
    equal the embedding rows."""
    candidates = [folder / name for name in SENTENCEPIECE_FILES if (folder / name).is_file()]
    candidates = candidates or sorted(folder.glob("*.model"))
    if len(candidates) != 1:
        raise PowerBertError(f"{folder}: expected one SentencePiece model (spiece.model, "
                             f"30k-clean.model or one *.model), found {len(candidates)}")
    path = candidates[0]
    try:
        processor = sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as error:
        raise PowerBertError(f"{path}: not a SentencePiece model ({error})") from None
    pieces = [processor.id_to_piece(index) for index in range(processor.get_piece_size())]
    if len(pieces) != config.vocabulary_size:
        raise PowerBertError(f"{path} has {len(pieces)} pieces but the model's vocab_size "
                             f"(embedding rows) is {config.vocabulary_size}")
    return path, pieces


def vocabulary_is_uncased(tokens: list[str]) -> bool:
    """An uncased vocabulary has no upper-case tokens outside [SPECIAL] ones."""
    return not any(token != token.lower() for token in tokens
                   if not (token.startswith("[") and token.endswith("]")))
