"""``tts-graph validate`` and ``tts-graph draw``: a spec checked, costed and drawn before anything
runs. Like the rest of the command line, only typer is imported at start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tts_graph.cli import _errors_as_one_line, _fail, _print_error, app

__all__ = ["draw", "validate"]

_SPEC = typer.Argument(help="A spec file (YAML or JSON); see examples/specs/.")


@app.command()
def validate(
    spec: Annotated[Path, _SPEC],
    cost: Annotated[
        bool, typer.Option("--cost", help="Also print the worst-case cost per question.")
    ] = False,
    prompt_tokens: Annotated[
        int, typer.Option(min=1, help="--cost: the prompt length to assume, in tokens.")
    ] = 512,
    model_params: Annotated[
        int | None,
        typer.Option(min=1, help="--cost: the model's parameter count, for FLOPs."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Check SPEC: exit 0 when it is valid, 2 with every problem listed by path otherwise.

    With --cost, print the most one question may spend (requests, tokens, FLOPs), computed from
    the spec alone and capped by its budget.
    """
    from tts_graph.spec import SpecError, build_graph, load_spec, worst_case
    from tts_graph.spec.build import placeholder_backend

    try:
        loaded = load_spec(spec)
        # The factories check what the models cannot (option combinations, verifier options).
        with _errors_as_one_line():
            build_graph(loaded, placeholder_backend(loaded))
    except SpecError as exc:
        if as_json:
            problems = [{"path": p.path, "message": p.message} for p in exc.problems]
            typer.echo(json.dumps({"valid": False, "problems": problems}, indent=2))
            raise typer.Exit(2) from None
        _print_error(f"{exc.source}: {len(exc.problems)} problem(s):")
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(2) from None
    worst = (
        worst_case(loaded, prompt_tokens=prompt_tokens, model_params=model_params) if cost else None
    )
    if as_json:
        out: dict[str, object] = {
            "valid": True,
            "name": loaded.name,
            "strategy": loaded.strategy.kind,
        }
        if worst is not None:
            out["worst_case"] = {**worst.to_dict(), "prompt_tokens_assumed": prompt_tokens,
                                 "notes": list(worst.notes)}  # fmt: skip
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"{spec}: valid ({loaded.name}: {loaded.strategy.kind})")
    if worst is not None:
        flops = "unknown (give --model-params)" if worst.flops is None else f"{worst.flops:.3g}"
        typer.echo(
            f"worst case per question, for a {prompt_tokens}-token prompt: "
            f"{worst.calls} requests, {worst.total_tokens} tokens "
            f"({worst.prompt_tokens} prompt + {worst.completion_tokens} completion), "
            f"{flops} FLOPs"
        )
        for note in worst.notes:
            typer.echo(f"  {note}")


@app.command()
def draw(
    spec: Annotated[Path, _SPEC],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write it: FILE.mmd (Mermaid) or FILE.png.")
    ],
) -> None:
    """Draw SPEC's graph, with the strategies nested in it, as Mermaid (.mmd) or PNG (.png)."""
    if out.suffix not in (".mmd", ".png"):
        _fail(f"--out must end in .mmd (Mermaid) or .png, got {out.name!r}")
    from tts_graph.spec import SpecError, build_graph, load_spec
    from tts_graph.spec.build import placeholder_backend
    from tts_graph.spec.draw import to_mermaid, to_png

    with _errors_as_one_line():
        try:
            loaded = load_spec(spec)
        except SpecError as exc:
            _fail(f"{exc}; run tts-graph validate {spec}")
        graph = build_graph(loaded, placeholder_backend(loaded))
        if out.suffix == ".mmd":
            out.write_text(to_mermaid(graph, loaded.name), encoding="utf-8")
        else:
            to_png(graph, out, loaded.name)
    typer.echo(str(out))
