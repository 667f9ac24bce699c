"""Chat rows whose lengths follow a real chat dataset's: the rows `make bench` trains on for packing.

    .venv/bin/python bench/chat_lengths.py --rows 64 --out /tmp/chat_lengths.jsonl    # prints the length summary

Source of the statistics: LMSYS-Chat-1M (Zheng et al., "LMSYS-Chat-1M: A Large-Scale Real-World LLM
Conversation Dataset", ICLR 2024, Table 1): 2.0 turns per conversation on average, 69.5 tokens per user
prompt and 214.5 tokens per assistant response on average (Llama tokenizer). The paper gives means, not
the shape: turn and message lengths are drawn here from log-normal distributions with those means
(sigma 1.0 for prompts, 0.8 for responses: an assumption, chosen for the long right tail such length
histograms show) and the turn count from {1: 40%, 2: 30%, 3: 20%, 4: 10%} (mean 2.0). The words are
random whole-word tokens of the model's own vocabulary, so the lengths are exact in its tokens; the
content is meaningless, which a speed benchmark does not mind.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics

PROMPT_MEAN, RESPONSE_MEAN = 69.5, 214.5  # tokens, LMSYS-Chat-1M Table 1
PROMPT_SIGMA, RESPONSE_SIGMA = 1.0, 0.8  # assumed (see the docstring)
TURNS = {1: 0.4, 2: 0.3, 3: 0.2, 4: 0.1}


def lognormal_tokens(rng: random.Random, mean: float, sigma: float) -> int:
    """A token count from a log-normal distribution with the given mean (mu = ln(mean) - sigma^2 / 2)."""
    return max(1, round(rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)))


def word_tokens(tokenizer) -> list[int]:
    """Ids of the vocabulary's whole lowercase words that start with a space (byte-level BPE: 'Ġword')."""
    vocab = tokenizer.get_vocab()
    return sorted(i for t, i in vocab.items() if t.startswith("Ġ") and t[1:].isalpha() and t[1:].islower()
                  and len(t) > 3)


def chat_rows(tokenizer, rows: int, seed: int = 0) -> list[dict]:
    """``rows`` conversations ({"messages": [...]}, ending with the assistant) with LMSYS-like lengths."""
    rng = random.Random(seed)
    words = word_tokens(tokenizer)

    def text(n: int) -> str:
        return tokenizer.decode([rng.choice(words) for _ in range(n)]).strip()

    out = []
    for _ in range(rows):
        turns = rng.choices(list(TURNS), weights=list(TURNS.values()))[0]
        messages = []
        for _ in range(turns):
            messages.append({"role": "user", "content": text(lognormal_tokens(rng, PROMPT_MEAN, PROMPT_SIGMA))})
            messages.append({"role": "assistant",
                             "content": text(lognormal_tokens(rng, RESPONSE_MEAN, RESPONSE_SIGMA))})
        out.append({"messages": messages})
    return out


def length_summary(rows: list[dict], tokenizer, max_length: int) -> str:
    """One line: templated row lengths (median, mean, p90, max) and the share longer than max_length."""
    lengths = [len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=False)) for r in rows]
    lengths.sort()
    over = sum(n > max_length for n in lengths) / len(lengths)
    return (f"{len(rows)} rows, templated tokens: median {statistics.median(lengths):.0f}, mean "
            f"{statistics.mean(lengths):.0f}, p90 {lengths[int(0.9 * (len(lengths) - 1))]}, max {lengths[-1]}; "
            f"{over:.0%} longer than {max_length} (truncated in training)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--out", required=True, help="JSON lines file to write")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from loralab.model.embedded import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("embedded/smollm2-135m-instruct"))
    rows = chat_rows(tokenizer, args.rows, args.seed)
    with open(args.out, "w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    print(length_summary(rows, tokenizer, args.max_length))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
