#!/usr/bin/env python3
"""Write the small tokenizer of the tiny random test checkpoint, deterministically, without training.

    tiny_tokenizer.py --out DIR [--vocab 1024]

A WordPiece vocabulary is built from fixed lists (special tokens, characters, a road-sign and
everyday-English word list, then two-letter continuation pieces until the size is reached), so the
same files come out on every machine and every run. The tokenizer only uses components that need no
regular-expression engine at run time (NFD + lowercase + accent stripping, whitespace and
punctuation splitting, WordPiece, an end-of-sequence template), so ps3rt's Rust side reads it with the
`tokenizers` crate built without oniguruma. DIR receives a Hugging Face tokenizer directory
(tokenizer.json, tokenizer_config.json, special_tokens_map.json) that `AutoTokenizer.from_pretrained`
and therefore PS3's own `PS3Tokenizer` load.
"""

from __future__ import annotations

import argparse
import os
import string
import sys

SPECIAL = ["[PAD]", "[UNK]", "[EOS]"]

WORDS = """
stop sign signs speed limit limits no entry yield give way one way do not enter road roads work works
ahead left right turn turns u straight only lane lanes merge keep pass passing overtaking parking park
zone school children crossing pedestrian pedestrians bicycle bicycles cycle cyclists bus tram truck
trucks vehicle vehicles car cars motor motorway highway exit end of the a an and or to in on at for
with by from street avenue km h mph kmh maximum minimum min max weight height width tons ton meters
metre metres m danger dangerous warning caution slippery when wet snow ice bend curve curves double
narrow bridge tunnel level railway train traffic light lights signal signals roundabout priority
major minor junction intersection crossroads animals deer cattle falling rocks wind steep hill
descent ascent uneven slow down reduce fast limited access toll customs police hospital fuel
station service services rest area information info tourist city town center centre north south
east west route detour closed open red white blue yellow green black orange brown gray grey
octagon triangle circle circular round square rectangle rectangular diamond arrow arrows symbol
text number numbers letter letters word words sticker shop store building house tree trees sky
cloud clouds person people man woman child dog cat bird pole post lamp street light fence wall
gate door window sidewalk pavement curb crosswalk zebra marking markings line lines yellow white
tall small large big little far near close distant blurry clear photo image picture of this that
is are be there here what where which who how many much very more less than all any some each
every first second third last next new old 10 20 30 40 50 60 70 80 90 100 110 120 130
""".split()


def build_vocab(size: int) -> list[str]:
    vocab: list[str] = []
    seen: set[str] = set()

    def add(tok: str) -> None:
        if tok not in seen and len(vocab) < size:
            seen.add(tok)
            vocab.append(tok)

    for tok in SPECIAL:
        add(tok)
    chars = string.ascii_lowercase + string.digits
    for ch in chars + string.punctuation:
        add(ch)
    for ch in chars:
        add("##" + ch)
    for word in WORDS:
        add(word)
    for a in string.ascii_lowercase:
        for b in string.ascii_lowercase:
            add("##" + a + b)
    if len(vocab) != size:
        raise SystemExit(f"tiny_tokenizer: built {len(vocab)} tokens, wanted {size}")
    return vocab


def build_tokenizer(size: int):
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = build_vocab(size)
    ids = {tok: i for i, tok in enumerate(vocab)}
    tk = Tokenizer(WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tk.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tk.post_processor = processors.TemplateProcessing(single="$A [EOS]", special_tokens=[("[EOS]", ids["[EOS]"])])
    tk.decoder = decoders.WordPiece()
    return tk


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory to write the Hugging Face tokenizer files to")
    ap.add_argument("--vocab", type=int, default=1024, help="vocabulary size (must equal the text tower's vocab_size)")
    args = ap.parse_args()
    from transformers import PreTrainedTokenizerFast

    tk = build_tokenizer(args.vocab)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    os.makedirs(args.out, exist_ok=True)
    fast.save_pretrained(args.out)
    print(f"tiny_tokenizer: wrote {args.out} ({args.vocab} WordPiece tokens)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
