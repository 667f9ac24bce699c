"""Data: chat rows read and normalised, split into prompt/completion, fitted to max_seq_length; the embedded dataset."""

from loralab.data.chat_rows import load_chat_rows, read_jsonl, to_prompt_completion
from loralab.data.json_answers import data_file
from loralab.data.row_lengths import fit_rows_to_length

__all__ = ["data_file", "fit_rows_to_length", "load_chat_rows", "read_jsonl", "to_prompt_completion"]
