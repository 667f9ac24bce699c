"""loralab: notebook-first LoRA / QLoRA fine-tuning over Unsloth, TRL, PEFT and datasets.

A notebook imports the pieces it needs from the modules that hold them::

    from loralab.config import validate_params
    from loralab.modeling import load_model, attach_lora

Importing ``loralab`` itself stays light (no torch): the params validator, the planner and the
CLI must answer before any model library loads.
"""

__version__ = "0.1.0"
