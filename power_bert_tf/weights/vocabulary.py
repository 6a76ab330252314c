"""A model folder's vocabulary: WordPiece's `vocab.txt` (BERT) or a SentencePiece model
(ALBERT), checked against the embedding rows."""
from __future__ import annotations

from pathlib import Path

import sentencepiece

from power_bert_tf.model.config import EncoderConfig
from power_bert_tf.errors import PowerBertError

# SentencePiece model file names: Hugging Face's, then Google's ALBERT release's.
SENTENCEPIECE_FILES = ("spiece.model", "30k-clean.model")


def read_wordpiece_vocabulary(folder: Path, config: EncoderConfig) -> tuple[Path, list[str]]:
    """(path of `vocab.txt`, its tokens); the token count must equal the embedding rows."""
    path = folder / "vocab.txt"
    if not path.is_file():
        raise PowerBertError(f"{folder}: no vocab.txt")
    tokens = path.read_text(encoding="utf-8").splitlines()
    if len(tokens) != config.vocabulary_size:
        raise PowerBertError(f"{path} has {len(tokens)} tokens but the model's vocab_size "
                             f"(embedding rows) is {config.vocabulary_size}")
    return path, tokens


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
