"""Which section of a notebook a headless run is in, said on the terminal as each section starts.

    from loralab.runs.sections import SECTION_ENGINE, register_section_engine
    register_section_engine()
    papermill.execute_notebook(src, out, engine_name=SECTION_ENGINE, progress_bar=False, log_output=False)
    # terminal: "[loralab] 2. Load the model", "[loralab] Before training", "[loralab] 5. Train", ...

papermill's own engine (nbclient) executes the notebook; this engine only wraps its ``cell_start``
hook, so the executed notebook is the same as with papermill's default engine. A section is the
nearest markdown heading above a code cell, said once, when its first code cell starts.
"""

from __future__ import annotations

from loralab.train.progress import terminal_line

SECTION_ENGINE = "loralab-sections"


def section_headings(cells: list) -> dict[int, str]:
    """cell index -> the heading of the section that starts there (first code cell after each heading)."""
    starts: dict[int, str] = {}
    pending: str | None = None
    for index, cell in enumerate(cells):
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else source
            heading = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), None)
            if heading:
                pending = heading
        elif cell.get("cell_type") == "code" and pending:
            starts[index] = pending
            pending = None
    return starts


def register_section_engine() -> None:
    """Register the engine with papermill (idempotent)."""
    from papermill.engines import NBClientEngine, papermill_engines

    class SectionEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            headings = section_headings(nb_man.nb.cells)
            cell_start = nb_man.cell_start

            def announce_then_start(cell, cell_index=None, **more):
                if cell_index in headings:
                    terminal_line(headings[cell_index])
                return cell_start(cell, cell_index, **more)

            nb_man.cell_start = announce_then_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(SECTION_ENGINE, SectionEngine)
