"""Links into the Token explorer: a token of a run's probe set (the Token dynamics heat map,
the Compare token diff) opens the explorer on that run's models, with the probe example's
prompt, context and reply as training saw them, analysed at once, at that token.

    open_in_explorer(run_path, config, example=2, token_index=7)   # from a page: switches page
    request = take_request()                                       # on the explorer: once

The request travels in the session (one tab), not in the URL: it is a one-off action, and the
explorer's own choices (run, r, c) are in the URL as usual once it has run.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

REQUEST = "explorer-open"  # session key of the pending request
EXPLORER_PAGE = "views/explorer.py"


@dataclass(frozen=True)
class ExplorerRequest:
    run: str  # the run's path
    instruction: str
    context: str
    response: str  # the reference reply the probe scored (the explorer scores it in full)
    example: int  # index in the probe set
    token_index: int  # 0-based index within the reply


def explorer_request(run_path: str, examples: list, example: int, token_index: int) -> ExplorerRequest:
    """The request for token `token_index` of probe example `example`, given the run's probe set
    (app.models.probe_examples). ValueError when the run's data no longer has that example."""
    if not 0 <= example < len(examples):
        raise ValueError(
            f"probe example {example} is not in this run's probe set as its data reads now "
            f"({len(examples)} examples): was the data file changed since the run?"
        )
    chosen = examples[example]
    return ExplorerRequest(run_path, chosen.instruction, chosen.context, chosen.response, example, int(token_index))


def open_in_explorer(run_path: str, config: dict, example: int, token_index: int) -> None:
    """Leave for the Token explorer on this token (st.switch_page; does not return). Errors
    (the run's data or tokenizer cannot be read here) are shown as one line, and the page stays."""
    from app import models

    try:
        examples = models.probe_examples(models.config_json(config))
        request = explorer_request(run_path, examples, example, token_index)
    except Exception as err:  # data or tokenizer missing on this machine: say so, stay here
        st.error(f"Cannot open this token in the explorer: {err}", icon=":material/error:")
        return
    st.session_state[REQUEST] = request
    st.switch_page(EXPLORER_PAGE)


def take_request() -> ExplorerRequest | None:
    """The pending request, removed from the session (it is acted on once)."""
    request = st.session_state.pop(REQUEST, None)
    return request if isinstance(request, ExplorerRequest) else None
