"""Fine-tune a BERT folder on a GLUE single-sentence task in PyTorch, as a user of
Transformers would, and save it with `save_pretrained`: the "model fine-tuned by another
framework" that experiments/import_check.py imports.

Needs torch and transformers (not TensorFlow or this project), e.g. from a separate
virtualenv:

    /work/peer-venv/bin/python experiments/torch_finetune.py --model=<folder> \
        --data_dir=$GLUE_DIR/SST-2 --output=<folder> --max_train_examples=2000

Writes <output>/ (config.json, model.safetensors, tokenizer.json, tokenizer_config.json)
and <output>.dev.json: the dev accuracy torch measures, its logits and the dev texts'
count, for the comparison.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

import torch
import transformers

LABELS = {0: "negative", 1: "positive"}


def read_tsv(path: Path) -> list[tuple[str, int]]:
    """(sentence, label) rows of a GLUE SST-2 file (header, no quoting)."""
    with path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(text, int(label)) for text, label in rows[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="pre-trained BERT folder")
    parser.add_argument("--data_dir", required=True, help="folder with train.tsv, dev.tsv")
    parser.add_argument("--output", required=True, help="save_pretrained folder to write")
    parser.add_argument("--max_train_examples", type=int, default=2000)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    started = time.time()
    torch.manual_seed(args.seed)
    data = Path(args.data_dir)
    train = read_tsv(data / "train.tsv")
    train = random.Random(args.seed).sample(train, min(args.max_train_examples, len(train)))
    dev = read_tsv(data / "dev.tsv")
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
    model = transformers.BertForSequenceClassification.from_pretrained(
        args.model, num_labels=2, id2label=LABELS,
        label2id={name: index for index, name in LABELS.items()})

    def batch(rows):
        encoded = tokenizer([text for text, _ in rows], padding=True, truncation=True,
                            max_length=args.max_seq_length, return_tensors="pt")
        return encoded, torch.tensor([label for _, label in rows])

    steps = args.epochs * -(-len(train) // args.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    model.train()
    for epoch in range(args.epochs):
        order = random.Random(args.seed + epoch).sample(train, len(train))
        for start in range(0, len(order), args.batch_size):
            inputs, labels = batch(order[start:start + args.batch_size])
            loss = model(**inputs, labels=labels).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        print(f"epoch {epoch + 1}: last loss {loss.item():.4f}", flush=True)
    model.eval()
    logits = []
    with torch.no_grad():
        for start in range(0, len(dev), 64):
            inputs, _ = batch(dev[start:start + 64])
            logits.append(model(**inputs).logits)
    logits = torch.cat(logits)
    labels = torch.tensor([label for _, label in dev])
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    output = Path(args.output)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    print(f"torch dev accuracy {accuracy:.4f} on {len(dev)} texts; saved {output}", flush=True)
    Path(f"{output}.dev.json").write_text(json.dumps({
        "dev_accuracy": accuracy, "dev_examples": len(dev), "train_examples": len(train),
        "logits": logits.tolist(), "files": sorted(p.name for p in output.iterdir()),
        "wall_seconds": round(time.time() - started, 1),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "settings": vars(args)}))


if __name__ == "__main__":
    main()
