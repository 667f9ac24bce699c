"""Data: chat rows read and normalised, split into prompt/completion, fitted to max_seq_length, their supervised tokens counted and shown; the embedded dataset."""

from loralab.data.chat_rows import load_chat_rows, read_jsonl, to_prompt_completion
from loralab.data.json_answers import data_file
from loralab.data.row_lengths import fit_rows_to_length
from loralab.data.supervision import (
    check_preference_supervision,
    check_supervision,
    preference_answers,
    supervised_dataset,
)
from loralab.data.supervision_view import supervision_view

__all__ = ["check_preference_supervision", "check_supervision", "data_file", "fit_rows_to_length", "load_chat_rows",
           "preference_answers", "read_jsonl", "supervised_dataset", "supervision_view", "to_prompt_completion"]
