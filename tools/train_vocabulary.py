"""Trains a T5-style SentencePiece vocabulary for keras-spactor.

pad=0, eos=1, unk=2, no bos, a `<mask>` piece for the generator, and 100
sentinels at the end (`<extra_id_0>` = vocabulary_size - 1).

Usage:
```
python tools/train_vocabulary.py ../shared/data/corpus/docs.train.jsonl.gz \
    --output_prefix /tmp/spactor_vocab --vocabulary_size 8000
python tools/train_vocabulary.py builtin:python-docs --output_prefix /tmp/v
```
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_spactor.data.vocabulary import train_vocabulary  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sources",
        nargs="+",
        help="'builtin:python-docs', or .jsonl/.jsonl.gz/.txt files or globs.",
    )
    parser.add_argument("--output_prefix", required=True)
    parser.add_argument("--vocabulary_size", type=int, default=32100)
    parser.add_argument("--num_sentinels", type=int, default=100)
    parser.add_argument("--no_mask_token", action="store_true")
    parser.add_argument("--character_coverage", type=float, default=0.9995)
    parser.add_argument("--max_documents", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sources = args.sources[0] if len(args.sources) == 1 else args.sources
    info = train_vocabulary(
        sources,
        args.output_prefix,
        vocabulary_size=args.vocabulary_size,
        num_sentinels=args.num_sentinels,
        add_mask_token=not args.no_mask_token,
        character_coverage=args.character_coverage,
        max_documents=args.max_documents,
        seed=args.seed,
    )
    summary = dict(info)
    ids = summary.pop("sentinel_ids")
    if ids:
        summary["first_sentinel_id"] = ids[0]
        summary["last_sentinel_id"] = ids[-1]
    print(json.dumps(summary, indent=2))
    return info


if __name__ == "__main__":
    main()
