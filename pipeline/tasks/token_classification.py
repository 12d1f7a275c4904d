"""Token classification (named entities: CoNLL-2003 and the like). Rows are words with one IOB2 tag each; the model
labels the first sub-token of every word (the others are ignored in training and scoring, as the Hugging Face
examples do). The metric is entity-level F1 as `seqeval` computes it by default (conlleval's chunking: exact span
and type), implemented here in `entities` rather than installed: seqeval pulls scikit-learn for one function."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import EdgesmithError, require
from .base import EVAL_BATCH, Task

WORD_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("ner_tags", "tags", "labels")
TAG = re.compile(r"O|[BIES]-.+")  # IOB2 (B-, I-, O), also IOB1/IOBES prefixes, which the chunker reads the same way
MIN_ARGMAX_AGREEMENT = 0.999  # export validation, per word: a near-tie may flip inside 1e-3 on thousands of words
MIN_FIDELITY = 0.9  # verify: share of reference token positions whose tag matches PyTorch's


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of every entity in one sentence's tags, by seqeval's default (conlleval) rules:
    an entity starts at B- (or S-), or at I-/E- whose type differs from the previous tag's, or that follows O/E-/S-;
    it ends before O, B-, S- or a change of type."""
    found: list[tuple[str, int, int]] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, kind = chunk[0], chunk[2:] or "_"
        ends = prev_tag in "ES" or (prev_tag in "BI" and tag in "BSO") or (prev_tag != "O" and prev_type != kind)
        starts = tag in "BS" or (prev_tag in "ESO" and tag in "IE") or (tag != "O" and prev_type != kind)
        if ends:
            found.append((prev_type, begin, i - 1))
        if starts:
            begin = i
        prev_tag, prev_type = tag, kind
    return found


def postprocess(text: str, row: Any, encoding: Any, labels: list[str]) -> dict[str, Any]:
    """The bundle's answer for one text: its entities with character spans. Words are the text's whitespace-separated
    words, as training and the entity-F1 score read them (CoNLL's words joined by spaces; "O'Gorman", "ex-England"
    and "P." are one word each, which the tokenizer's own pre-tokenizer splits at the punctuation); each word takes
    the tag of its first token, the one it was trained and scored on. An entity's text is then trimmed of the
    punctuation free text glues to a word, so "Genève:" comes back as "Genève" (its tags are untouched). Not of ".",
    which ends abbreviations ("U.S.", "P.")."""
    import numpy as np

    edge = ",;:!?\"'()[]{}«»“”‘’"  # here, not a module constant: the bundle's edgesmith_task.py is this function's source

    words: list[list[int]] = []  # [start char, end char, first token position]
    for pos, (start, end) in enumerate(encoding.offsets):
        if encoding.special_tokens_mask[pos] or start == end:
            continue
        if words and not any(c.isspace() for c in text[words[-1][1] : start]):
            words[-1][1] = max(words[-1][1], end)  # no whitespace since the word's last token: the same word
        else:
            words.append([start, end, pos])
    probs = np.exp(row - row.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    tags = [labels[int(row[w[2]].argmax())] for w in words]
    found = []
    for kind, first, last in entities(tags):
        start, end = words[first][0], words[last][1]
        span = text[start:end]
        if span.strip(edge):
            start += len(span) - len(span.lstrip(edge))
            end -= len(span) - len(span.rstrip(edge))
        score = float(np.mean([probs[w[2]].max() for w in words[first : last + 1]]))
        found.append({"type": kind, "text": text[start:end], "start": start, "end": end, "score": round(score, 4)})
    return {"text": text, "entities": found}


def f1(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Micro entity F1, precision and recall (points) over sentences, seqeval's default mode."""
    true = {(i, *e) for i, tags in enumerate(gold) for e in entities(tags)}
    pred = {(i, *e) for i, tags in enumerate(predicted) for e in entities(tags)}
    hit = len(true & pred)
    p = hit / len(pred) if pred else 0.0
    r = hit / len(true) if true else 0.0
    return {"f1": 2 * p * r / (p + r) * 100 if p + r else 0.0, "precision": p * 100, "recall": r * 100}


def _column(row: dict[str, Any], given: str | None, candidates: tuple[str, ...]) -> str | None:
    if given is not None:
        return given if given in row else None
    return next((c for c in candidates if c in row), None)


def _tag_column(rows: list[dict[str, Any]], label_column: str, where: str) -> str | None:
    """The tag column: data.label_column where any row has it; else, with label_column left at its default, the
    first of TAG_COLUMNS any row has; None for untagged rows. Chosen over every row, not the first: a first row
    without tags had made the whole split untagged, or read another column than the one the user named. A row
    without the chosen column is untagged, which check_labels refuses beside tagged rows."""
    from ..config import DataConfig

    present = {key for r in rows for key in r}
    if label_column in present:
        return label_column
    require(label_column == DataConfig.model_fields["label_column"].default,
            f"{where}: no row has the tag column {label_column!r} (data.label_column); the rows have "
            f"{sorted(present)}: set data.label_column to the one with the tags")
    return next((c for c in TAG_COLUMNS if c in present), None)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class TokenClassification(Task):
    name = "token-classification"
    labelled = True
    output_name = "logits"
    output_axes = {0: "batch", 1: "sequence"}
    atol = 1e-3
    bundle_functions = (entities, postprocess)

    # ---- reading rows ------------------------------------------------------------------------------------------
    def normalize(self, rows: list[dict[str, Any]], text_columns: tuple[str, ...] | None, label_column: str,
                  score_column: str, where: str) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        """{"tokens": [...], "ner_tags": [...]} rows (the `datasets` layout) -> {"text": [words joined by spaces],
        "words": [...], "label": [tags] | None}; a row whose tags do not match its words stops here, by number."""
        require(len(rows) > 0, f"{where}: no rows; check the file is not empty")
        words_col = _column(rows[0], text_columns[0] if text_columns else None, WORD_COLUMNS)
        require(words_col is not None, f"{where}: no word column ({text_columns[0] if text_columns else ' or '.join(WORD_COLUMNS)}); "
                "write rows like {\"tokens\": [...], \"ner_tags\": [...]} or set data.text_columns: [COLUMN]")
        tags_col = _tag_column(rows, label_column, where)
        out = []
        for number, r in enumerate(rows, 1):
            words, tags = r.get(words_col), r.get(tags_col) if tags_col else None
            require(_strings(words), f"{where}: row {number}, column {words_col!r} is not a list of words; write the "
                    "sentence as a JSON list of strings")
            words = [w.strip() for w in words]
            if not words and not tags:
                continue  # an empty sentence: nothing to tag or score
            # The bundle splits text at whitespace, as str.split does: a word that is empty or holds whitespace would
            # be no word or two on the device, and its tag would land elsewhere than it was trained and scored.
            odd = next((i for i, w in enumerate(words) if not w or len(w.split()) > 1), None)
            if odd is not None:
                raise EdgesmithError(f"{where}: row {number}, word {odd + 1} ({r[words_col][odd]!r}) is empty or holds "
                                     "whitespace; remove it with its tag, or split it into words")
            out.append({"text": [" ".join(words)], "words": words, "label": self._tags(tags, len(words), number, where)})
        require(len(out) > 0, f"{where}: every row has no words; check the column {words_col!r}")
        return out, (words_col,)

    @staticmethod
    def _tags(tags: Any, n: int, number: int, where: str) -> list[str] | None:
        if tags is None or tags == []:
            return None
        require(_strings(tags), f"{where}: row {number}: tags {str(tags)[:40]} are not strings; write IOB2 tag names "
                "(B-PER, I-PER, O), not class numbers")
        require(len(tags) == n, f"{where}: row {number} has {n} words but {len(tags)} tags; give every word one tag")
        tags = [t.strip() for t in tags]  # as classification labels are: "B-PER " is not a class of its own
        bad = next((t for t in tags if not TAG.fullmatch(t)), None)
        require(bad is None, f"{where}: row {number}: tag {bad!r} is not IOB2 (B-TYPE, I-TYPE or O); convert the tags")
        return list(tags)

    def check_labels(self, train: list[dict[str, Any]], evals: list[dict[str, Any]], column: str,
                     where: str) -> tuple[list[str], bool]:
        from ..labels import sort_labels

        for rows, split in ((evals, "eval"), (train, "train")):
            missing = sum(r["label"] is None for r in rows)
            if split == "train" and missing == len(rows):
                continue  # distillation needs no labels
            require(missing == 0, f"{where} ({split}): {missing} of {len(rows)} rows have no tags; tag every word of every "
                    f"row (column {column!r})")
        labelled = all(r["label"] is not None for r in train)
        labels = sort_labels(t for r in evals + (train if labelled else []) for t in r["label"])
        require(len(labels) >= 2, f"{where}: every word has the tag {labels[0]!r}; token classification needs two tags or more")
        return labels, labelled

    def encode_label(self, label: Any, ids: dict[str, int]) -> Any:
        return None if label is None else [ids[t] for t in label]

    def label_names_of(self, label: Any) -> list[str]:
        return [] if label is None else list(label)

    def refuse_augment(self) -> str | None:
        return ("data.augment replaces words, and the token tags would no longer fit them; remove data.augment "
                "(add in-domain sentences through data.unlabeled instead)")

    def refuse_tokenizer(self, tokenizer: Any) -> str | None:
        """Words are tokenized as given (is_split_into_words), which a byte-level BPE tokenizer (RoBERTa's, as
        roberta-base ships it) refuses unless it adds a prefix space: the teacher stage had failed on it."""
        try:
            tokenizer([["a", "b"]], is_split_into_words=True)
        except (AssertionError, ValueError, TypeError) as err:
            return (f"token classification tokenizes pre-split words, which this tokenizer refuses ({str(err).strip() or type(err).__name__}); "
                    "for RoBERTa-style tokenizers set \"add_prefix_space\": true in the model's tokenizer_config.json")
        return None

    # ---- the model ---------------------------------------------------------------------------------------------
    def model_class(self) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def output(self, out: Any, mask: Any) -> Any:
        return out.logits

    # ---- training ----------------------------------------------------------------------------------------------
    def tokenize(self, rows: list[dict[str, Any]], tokenizer: Any, max_length: int, labels: bool) -> list[dict[str, Any]]:
        """Words tokenized as given (is_split_into_words); with `labels`, each word's tag id on its first sub-token and
        -100 (ignored) on the rest, on special tokens and on rows without tags."""
        enc = tokenizer([_words(r) for r in rows], is_split_into_words=True, truncation=True, max_length=max_length)
        items = [{k: enc[k][i] for k in enc.keys()} for i in range(len(rows))]
        if labels:
            require(any(r["label"] is not None for r in rows), "training on gold tags needs tagged training rows; tag "
                    "the data or set distill.label_weight: 0")
            for i, (item, r) in enumerate(zip(items, rows)):
                firsts = _first_subtokens(enc.word_ids(i))
                item["labels"] = [r["label"][w] if w is not None and r["label"] is not None else -100 for w in firsts]
        return items

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)  # pads labels with -100

    def kd_loss(self, s: Any, t: Any, mask: Any, labels: Any, temperature: float, label_weight: float) -> Any:
        """Per-token KL of temperature-softened tag distributions (x T^2) over every real token, plus cross-entropy
        on the gold tags of first sub-tokens."""
        import torch.nn.functional as F

        T, m = temperature, mask.to(s.logits.dtype)
        log_s, log_t = F.log_softmax(s.logits / T, -1), F.log_softmax(t.logits / T, -1)
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)
        loss = (kl * m).sum() / m.sum() * T * T
        if labels is not None and label_weight > 0 and bool((labels != -100).any()):
            loss = loss + label_weight * F.cross_entropy(s.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return loss

    def label_free_loss(self, out: Any, mask: Any) -> Any:
        import torch.nn.functional as F

        keep = mask.bool()
        logits = out.logits[keep]
        return F.cross_entropy(logits, logits.detach().argmax(-1))

    def divergence(self, out: Any, reference: Any, mask: Any) -> float:
        m = mask.to(out.logits.dtype)
        log_o, log_r = out.logits.log_softmax(-1), reference.logits.log_softmax(-1)
        return (((log_r.exp() * (log_r - log_o)).sum(-1) * m).sum() / m.sum()).item()

    def train_metric(self, logits: np.ndarray, label_ids: np.ndarray) -> float:
        """Tag accuracy over the tagged first sub-tokens (cheap, and it rises with entity F1)."""
        keep = label_ids != -100
        return float((logits.argmax(-1)[keep] == label_ids[keep]).mean() * 100)

    # ---- evaluation --------------------------------------------------------------------------------------------
    def collect(self, session: Any, rows: list[dict[str, Any]], tokenizer: Any, max_length: int,
                batch_size: int = EVAL_BATCH) -> np.ndarray:
        """[rows, words, tags]: each word's logits at its first sub-token; NaN past a row's words and for words cut
        off by max_length (scored as O)."""
        per_row: list[np.ndarray] = []
        for i in range(0, len(rows), batch_size):
            chunk = [_words(r) for r in rows[i : i + batch_size]]
            enc = tokenizer(chunk, is_split_into_words=True, padding=True, truncation=True, max_length=max_length,
                            return_tensors="np")
            logits = session.run({k: v.astype(np.int64) for k, v in enc.items()})
            for j, words in enumerate(chunk):
                row = np.full((len(words), logits.shape[-1]), np.nan, dtype=np.float32)
                for pos, w in enumerate(_first_subtokens(enc.word_ids(j))):
                    if w is not None:
                        row[w] = logits[j, pos]
                per_row.append(row)
        out = np.full((len(per_row), max(len(r) for r in per_row), per_row[0].shape[-1]), np.nan, dtype=np.float32)
        for k, row in enumerate(per_row):
            out[k, : len(row)] = row
        return out

    def metric_label(self, scored: bool) -> str:
        return "entity F1 (seqeval, x100)"

    def quality(self, out: np.ndarray, rows: list[dict[str, Any]], reference: np.ndarray | None,
                names: list[str] = ()) -> dict[str, float]:
        require(len(names) == out.shape[-1], "token quality needs the tag names in class-id order (the teacher's label_names)")
        gold, predicted = [], []
        for r, row in zip(rows, out):
            if not all(isinstance(t, int) for t in r["label"]):
                raise TypeError("entity F1 needs tag ids; read labelled rows through stages.teacher.labelled_rows")
            n = len(r["label"])
            ids = np.where(np.isnan(row[:n]).any(-1), names.index("O") if "O" in names else 0, np.nan_to_num(row[:n]).argmax(-1))
            gold.append([names[t] for t in r["label"]])
            predicted.append([names[int(t)] for t in ids])
        scores = f1(gold, predicted)
        return {"metric": scores["f1"], **scores}

    def compare(self, candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        words = ~np.isnan(reference).any(-1)
        same = candidate[words].argmax(-1) == reference[words].argmax(-1)
        return {"max_abs_diff": float(np.abs(candidate[words] - reference[words]).max()), "argmax_agreement": float(same.mean())}

    def agrees(self, check: dict[str, float]) -> bool:
        return check["max_abs_diff"] <= self.atol and check["argmax_agreement"] >= MIN_ARGMAX_AGREEMENT

    def fidelity(self, got: np.ndarray, pytorch: np.ndarray, mask: np.ndarray | None = None) -> tuple[bool, str]:
        same = got.argmax(-1) == pytorch.argmax(-1)  # padding left out: it can be a large share of short texts' positions
        agree = float(same[mask.astype(bool)].mean() if mask is not None else same.mean())
        return agree >= MIN_FIDELITY, f"{agree:.1%} tag agreement with PyTorch over the reference tokens"


def _words(row: dict[str, Any]) -> list[str]:
    """A row's words; rows from data.unlabeled carry text only, split at whitespace."""
    return row.get("words") or row["text"][0].split()


def _first_subtokens(word_ids: list[int | None]) -> list[int | None]:
    """Per token position: the word id where the token is its word's first sub-token, else None."""
    firsts, prev = [], None
    for w in word_ids:
        firsts.append(w if w is not None and w != prev else None)
        prev = w
    return firsts

