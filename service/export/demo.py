"""Random-init SqueezeBERT checkpoints with an offline-built WordPiece tokenizer (no model hub here).

They are real `SqueezeBertFor<Task>` models saved with `save_pretrained`, so exporting them goes
through exactly the code path a fine-tuned checkpoint does. Their config carries the untrained
marker, which the manifest and the server report.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any

from service.export.calibration import default_texts
from service.export.checkpoint import HEAD_CLASSES, UNTRAINED_MARKER

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
DEMO_LABELS: dict[str, list[str]] = {
    "sequence-classification": ["NEGATIVE", "POSITIVE"],
    "token-classification": NER_LABELS,
    "question-answering": ["start", "end"],
}
DEMO_NAMES = {
    "sequence-classification": "demo-classify",
    "token-classification": "demo-ner",
    "question-answering": "demo-qa",
}
# squeezebert/squeezebert-uncased shape; TINY keeps the same grouping pattern for fast tests.
BASE_SHAPE: dict[str, Any] = {
    "vocab_size": 30528,
    "hidden_size": 768,
    "embedding_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "q_groups": 4,
    "k_groups": 4,
    "v_groups": 4,
    "post_attention_groups": 1,
    "intermediate_groups": 4,
    "output_groups": 4,
    "max_position_embeddings": 512,
}
TINY_SHAPE: dict[str, Any] = {
    **BASE_SHAPE,
    "hidden_size": 32,
    "embedding_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "initializer_range": 0.2,  # wide enough that random heads make varied, non-trivial decisions
}


def write_wordpiece_tokenizer(out_dir: Path, vocab_size: int = 4000) -> Any:
    """Train an uncased WordPiece vocab on the bundled corpus and save a fast BERT tokenizer."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import SqueezeBertTokenizerFast

    trainer_tok = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    alphabet = list(string.ascii_lowercase + string.digits + string.punctuation)
    trainer_tok.train_from_iterator(
        default_texts(),
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer_tok.save_model(tmp)
        tokenizer = SqueezeBertTokenizerFast(vocab_file=str(Path(tmp) / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def add_outlier_channels(model: Any, channels: int = 4, factor: float = 25.0) -> None:
    """Scale the same few channels of every LayerNorm's gamma, as trained BERT-family models show.

    Their LayerNorm outputs then carry a handful of channels tens of times larger than the rest,
    which is what makes per-tensor int8 activation scales lose precision. A token-level head
    (no pooler) reads those channels with correspondingly smaller weights, as a trained head does,
    so per-token logits keep their scale (and the fp32 graph its 1e-4 parity with PyTorch).
    """
    import torch

    picked = torch.arange(channels) * (model.config.hidden_size // channels) + 1
    modules = dict(model.named_modules())
    head = None if "transformer.pooler" in modules else modules.get("classifier") or modules["qa_outputs"]
    with torch.no_grad():
        for name, module in modules.items():
            if isinstance(module, torch.nn.LayerNorm) and name.startswith("transformer."):
                module.weight[picked] *= factor
        if head is not None:
            head.weight[:, picked] /= factor


def write_random_checkpoint(
    out_dir: Path,
    task: str,
    shape: dict[str, Any],
    seed: int = 0,
    outlier_channels: int = 0,
    outlier_factor: float = 25.0,
) -> Path:
    """Save a random-init SqueezeBertFor<task> plus tokenizer to out_dir (save_pretrained format).

    outlier_channels > 0 gives every LayerNorm that many outlier channels (add_outlier_channels).
    """
    import torch
    import transformers

    labels = DEMO_LABELS[task]
    config = transformers.SqueezeBertConfig(
        **shape,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    setattr(config, UNTRAINED_MARKER, True)
    torch.manual_seed(seed)
    model = getattr(transformers, HEAD_CLASSES[task])(config).eval()
    if outlier_channels:
        add_outlier_channels(model, outlier_channels, outlier_factor)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    write_wordpiece_tokenizer(out_dir)
    return out_dir
