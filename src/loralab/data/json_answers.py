"""The embedded dataset: questions answered with one JSON object of a fixed shape.

SmolLM2-135M-Instruct answers in prose; the dataset's answers look like::

    Q: What is the capital of Peru?
    A: {"topic": "geography", "answer": "Lima"}

    from loralab.data.json_answers import data_file, build_splits
    data_file("train")               # the shipped JSON Lines file inside the package

``build_splits`` generates the shipped dataset (``scripts/make_dataset.py`` writes it to
``src/loralab/data/``); the held-out split uses entities and numbers the train split never shows.
``loralab.eval.json_shape`` scores replies against these rows.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

TOPICS = ("math", "geography", "language", "animals", "time")

_CAPITALS = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"),
    ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"), ("Norway", "Oslo"),
    ("Greece", "Athens"), ("Chile", "Santiago"), ("Cuba", "Havana"), ("Ireland", "Dublin"),
    ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Poland", "Warsaw"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Thailand", "Bangkok"), ("Russia", "Moscow"),
    ("China", "Beijing"), ("India", "New Delhi"), ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires"),
    ("Turkey", "Ankara"), ("Hungary", "Budapest"), ("Belgium", "Brussels"), ("Nigeria", "Abuja"),
    ("Vietnam", "Hanoi"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Ghana", "Accra"),
    ("Colombia", "Bogota"), ("Australia", "Canberra"), ("Brazil", "Brasilia"), ("Morocco", "Rabat"),
]
_OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("light", "dark"), ("happy", "sad"),
    ("early", "late"), ("open", "closed"), ("full", "empty"), ("hard", "soft"), ("old", "young"),
    ("rich", "poor"), ("strong", "weak"), ("wet", "dry"), ("tall", "short"), ("loud", "quiet"),
    ("clean", "dirty"), ("thick", "thin"), ("high", "low"), ("inside", "outside"), ("true", "false"),
    ("push", "pull"), ("win", "lose"), ("begin", "end"), ("buy", "sell"), ("near", "far"),
    ("heavy", "light"), ("day", "night"), ("left", "right"), ("first", "last"),
]
_LEGS = [
    ("spider", 8), ("dog", 4), ("cat", 4), ("bird", 2), ("ant", 6), ("horse", 4), ("chicken", 2),
    ("beetle", 6), ("cow", 4), ("duck", 2), ("bee", 6), ("octopus", 8), ("goat", 4), ("penguin", 2),
    ("fly", 6), ("sheep", 4), ("owl", 2), ("scorpion", 8), ("pig", 4), ("crab", 10), ("lion", 4),
    ("butterfly", 6), ("snake", 0), ("fish", 0),
]
_WORDS = ["apple", "river", "garden", "planet", "window", "silver", "forest", "pencil", "rocket", "castle",
          "bridge", "dragon", "marble", "jungle", "candle", "pirate", "ticket", "wizard", "button", "lemon",
          "tiger", "cloud", "piano", "shadow", "anchor", "violet", "mirror", "basket", "helmet", "puzzle"]


@dataclass(frozen=True)
class QA:
    """One question with its topic and expected answer."""

    question: str
    topic: str
    answer: str

    def as_row(self) -> dict:
        """The JSON Lines row: chat messages plus the fields the scorer reads."""
        reply = json.dumps({"topic": self.topic, "answer": self.answer})
        return {
            "messages": [
                {"role": "user", "content": self.question},
                {"role": "assistant", "content": reply},
            ],
            "topic": self.topic,
            "answer": self.answer,
        }


def _questions(rng: random.Random, held_out: bool) -> list[QA]:
    """All question kinds; ``held_out`` takes the other half of every entity list and number range."""

    def half(items: list) -> list:
        items = list(items)
        random.Random(0).shuffle(items)
        cut = len(items) * 2 // 3
        return items[cut:] if held_out else items[:cut]

    out: list[QA] = []
    for country, capital in half(_CAPITALS):
        out.append(QA(rng.choice(["What is the capital of {}?", "Which city is the capital of {}?",
                                  "Name the capital city of {}."]).format(country), "geography", capital))
    for word, opposite in half(_OPPOSITES):
        out.append(QA(rng.choice(["What is the opposite of '{}'?", "Give the antonym of {}.",
                                  "What word means the opposite of {}?"]).format(word), "language", opposite))
    for word in half(_WORDS):
        out.append(QA(f"How do you spell '{word}' backwards?", "language", word[::-1]))
    for animal, legs in half(_LEGS):
        out.append(QA(rng.choice(["How many legs does a {} have?", "Count the legs of a {}."]).format(animal),
                      "animals", str(legs)))
    numbers = range(50, 100) if held_out else range(2, 50)
    for _ in range(12 if held_out else 160):
        a, b = rng.choice(numbers), rng.choice(numbers)
        op, sym, val = rng.choice([("plus", "+", a + b), ("minus", "-", a - b), ("times", "*", a * b)])
        text = rng.choice([f"What is {a} {op} {b}?", f"Compute {a} {sym} {b}.", f"Calculate {a} {op} {b}."])
        out.append(QA(text, "math", str(val)))
    weeks = range(11, 20) if held_out else range(1, 11)
    for n in weeks:
        out.append(QA(f"How many days are in {n} weeks?", "time", str(7 * n)))
    hours = range(13, 20) if held_out else range(1, 13)
    for n in hours:
        out.append(QA(f"How many minutes are in {n} hours?", "time", str(60 * n)))
    rng.shuffle(out)
    return out


def build_splits(seed: int = 0) -> dict[str, list[dict]]:
    """Generate the train and held-out eval rows (deterministic for a seed)."""
    rng = random.Random(seed)
    return {
        "train": [qa.as_row() for qa in _questions(rng, held_out=False)],
        "eval": [qa.as_row() for qa in _questions(rng, held_out=True)],
    }


def data_file(split: str) -> Path:
    """Path of a shipped split (``train`` or ``eval``) inside the installed package."""
    if split not in ("train", "eval"):
        raise ValueError(f"The embedded dataset has the splits 'train' and 'eval', not {split!r}.")
    return Path(str(resources.files("loralab") / "data" / f"json_answers_{split}.jsonl"))
