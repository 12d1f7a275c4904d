"""Teacher-labelled augmentation for distillation (TinyBERT, Jiao et al. 2020): copies of the distillation texts with
some whole words swapped for near neighbours. The copies carry no label; the teacher labels them through the KD loss.

Why neighbours in the teacher's word embeddings and not a masked LM: TinyBERT asks BERT's masked-LM head for
single-piece words and falls back to GloVe neighbours for the rest. The teachers edgesmith distils are fine-tuned
classifiers and sentence encoders whose checkpoints carry no masked-LM head, and nothing can be downloaded; so every
word takes the neighbour route, with the teacher's own input word embeddings as the vectors: they cover exactly its
vocabulary and need no second model. Only WordPiece vocabularies (BERT, DistilBERT, ELECTRA) mark word pieces with
'##'; BPE and SentencePiece teachers are refused.

The teacher's outputs are not cached: the KD trainer computes the teacher's logits, hidden states and attention
per batch on the fly. A cache pays only when a row is seen again, and distillation runs one epoch by default; while
keeping every hidden state for tens of thousands of rows costs more memory and disk than the forward it saves on
CPU (MiniLM's 7 hidden states at SST-2's ~25 tokens a sentence are ~270 KB a row, ~11 GB for 40k rows, before the
attention maps; times `copies` with augmentation), and a new augmentation seed would invalidate it anyway.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from .config import AugmentConfig
from .errors import EdgesmithError

CONTINUATION = "##"  # WordPiece marks a piece that continues the word before it
CHUNK = 1024  # query words per similarity block: [1024, vocab] floats, ~120 MB for a 30k vocabulary


def whole_words(tokenizer: Any) -> np.ndarray:
    """Ids of the vocabulary's whole words, the only tokens replaced or used as replacements: no special or
    [unused] token, no '##' piece, nothing without a letter or digit (punctuation). Refuses a non-WordPiece
    tokenizer."""
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    kind = type(model).__name__
    if kind != "WordPiece":
        raise EdgesmithError(f"data.augment replaces WordPiece words (BERT, DistilBERT, ELECTRA), but this teacher's "
                             f"tokenizer is {kind or type(tokenizer).__name__}; remove data.augment")
    special = set(tokenizer.all_special_tokens)
    return np.array(sorted(i for tok, i in tokenizer.get_vocab().items()
                           if tok not in special and not tok.startswith((CONTINUATION, "[unused"))
                           and any(ch.isalnum() for ch in tok)), dtype=np.int64)


def neighbours(embeddings: np.ndarray, words: np.ndarray, queries: list[int], k: int) -> dict[int, np.ndarray]:
    """For each id in `queries` (all in `words`), the `k` ids of `words` nearest by cosine in `embeddings`
    [vocab, hidden], itself excluded, nearest first."""
    unit = embeddings[words] / np.maximum(np.linalg.norm(embeddings[words], axis=1, keepdims=True), 1e-12)
    position = {int(w): i for i, w in enumerate(words)}
    k = min(k, len(words) - 1)
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(queries), CHUNK):
        block = queries[start: start + CHUNK]
        rows = np.array([position[q] for q in block])
        sims = unit[rows] @ unit.T  # [block, words]
        sims[np.arange(len(block)), rows] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        for q, idx in zip(block, np.take_along_axis(top, order, axis=1)):
            out[q] = words[idx]
    return out


def augment_rows(rows: list[dict[str, Any]], tokenizer: Any, embeddings: np.ndarray,
                 cfg: AugmentConfig) -> list[dict[str, Any]]:
    """`cfg.copies` augmented copies of `rows` (copy after copy, in row order), label None. In each text, every
    single-piece whole word is replaced with probability `cfg.replace_prob` by one of its `cfg.neighbours` nearest
    words (uniformly); pieces of longer words, special tokens and punctuation stay. Deterministic for `cfg.seed`.
    `embeddings`: the teacher's input word embeddings [vocab, hidden]."""
    words = whole_words(tokenizer)
    words = words[words < len(embeddings)]  # tokens added after training have no embedding row
    if len(words) < 2:
        raise EdgesmithError("data.augment: the teacher's vocabulary has fewer than two whole words; remove data.augment")
    is_word = np.zeros(max(len(embeddings), len(tokenizer)), dtype=bool)
    is_word[words] = True
    pieces = [[tokenizer.tokenize(t) for t in r["text"]] for r in rows]
    ids = [[tokenizer.convert_tokens_to_ids(p) for p in texts] for texts in pieces]
    swappable = [[_swappable(p, i, is_word) for p, i in zip(texts, text_ids)] for texts, text_ids in zip(pieces, ids)]
    queries = sorted({i for texts, marks in zip(ids, swappable) for t, m in zip(texts, marks) for i, ok in zip(t, m) if ok})
    near = neighbours(embeddings, words, queries, cfg.neighbours)
    rng = random.Random(cfg.seed)
    out = []
    for _ in range(cfg.copies):
        for texts, text_ids, marks in zip(pieces, ids, swappable):
            swapped = [_swap(p, i, m, near, tokenizer, rng, cfg.replace_prob) for p, i, m in zip(texts, text_ids, marks)]
            out.append({"text": swapped, "label": None})
    return out


def _swappable(pieces: list[str], ids: list[int], is_word: np.ndarray) -> list[bool]:
    """Whether each piece is a whole word on its own: a vocabulary word not followed by a '##' continuation."""
    return [bool(is_word[i]) and not (n + 1 < len(pieces) and pieces[n + 1].startswith(CONTINUATION))
            for n, i in enumerate(ids)]


def _swap(pieces: list[str], ids: list[int], marks: list[bool], near: dict[int, np.ndarray], tokenizer: Any,
          rng: random.Random, p: float) -> str:
    out = [tokenizer.convert_ids_to_tokens(int(rng.choice(near[i]))) if ok and rng.random() < p else piece
           for piece, i, ok in zip(pieces, ids, marks)]
    return tokenizer.convert_tokens_to_string(out)
