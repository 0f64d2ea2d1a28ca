"""`ohp tag-learn`: teach the tagger's model from the decisions people made in a collection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli import (
    CodebookOption,
    DbOption,
    IncludeRestricted,
    UserOption,
    app,
    console,
    exported_scope,
    open_codebook,
    open_store,
)
from pipeline.config import PROJECT_THEMES_MODEL
from pipeline.stages.codebook import DEFAULT_MODEL


@app.command("tag-learn")
def tag_learn(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to save the model (default: the configured one, else annotations/themes-model.json here; "
            "with --from-examples, the one ohp ships)",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    from_examples: Annotated[
        bool, typer.Option(help="Learn from ohp's labelled examples alone, no database (rebuilds the shipped model)")
    ] = False,
    include_restricted: IncludeRestricted = False,
    user: UserOption = None,
    codebook: CodebookOption = None,
    db: DbOption = None,
) -> None:
    """Teach the tagger's model from people's decisions (accepted and added themes, rejected ones) together
    with ohp's labelled examples. `ohp tag` then tags again with it; no decision is touched. Its file holds the
    words of what it learnt from: the decisions on recordings an export writes, closed ones only when a
    researcher asks."""
    from pipeline.cli import config
    from pipeline.learning import learn
    from pipeline.stages.learned import save_model

    book = open_codebook(codebook)
    decisions = []
    if not from_examples:
        store = open_store(db)
        decisions = store.theme_decisions(exported_scope(store, None, include_restricted, user))
    if out is None:
        configured = config.themes_model
        out = DEFAULT_MODEL if from_examples else (configured if configured != DEFAULT_MODEL else PROJECT_THEMES_MODEL)
    model = learn(book, decisions)
    save_model(model, out)
    learned = ", ".join(f"{language}: {len(m.themes)} themes" for language, m in sorted(model.languages.items()))
    console.print(
        f"{out}: model {model.version} from {model.trained_on['labelled']} labelled sentences and "
        f"{len(decisions)} decisions ({learned})",
        highlight=False,
    )
    if not from_examples:
        console.print("`ohp tag` tags the recordings again with it (decisions are kept)")
