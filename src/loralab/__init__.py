"""loralab: notebook-first LoRA / QLoRA fine-tuning over Unsloth, TRL, PEFT and datasets.

One subpackage per stage of a run; an import points from a later stage to an earlier one::

    plan/      will it fit? (torch-free)      params/  validated parameters      model/   load + LoRA
    data/      chat rows, held-out split      train/   trainer, checkpoints      adapters/ save, verify, serve
    export/    merge, parity, GGUF, Ollama    eval/    held-out loss, scorers, loralab eval
    runs/      run folder, loralab run        sweeps/  loralab sweep

A notebook imports what it calls from a stage::

    from loralab.params import params_from_namespace
    from loralab.model import load_model, attach_lora

Importing ``loralab`` itself stays light (no torch): the params validator, the planner and the
CLI must answer before any model library loads.
"""

__version__ = "0.1.0"
