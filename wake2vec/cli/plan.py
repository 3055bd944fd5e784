"""``wake2vec plan``: estimate each phase's peak GPU memory before renting a GPU."""

from __future__ import annotations

import click

from wake2vec.cli.options import recipe_argument, set_option
from wake2vec.plan import GPUS  # arithmetic only: imports no torch

GPU_CHOICES = tuple(GPUS)


@click.command("plan")
@recipe_argument
@set_option
@click.option(
    "--gpu",
    type=click.Choice(GPU_CHOICES),
    default="t4",
    show_default=True,
    help="GPU to check the estimate against.",
)
@click.option(
    "--new-tokens",
    type=click.IntRange(min=0),
    default=None,
    help="New token ids, i.e. new embedding rows (default: the recipe's lexicon words "
    "times the injector's ids per word).",
)
@click.option(
    "--gradient-checkpointing", is_flag=True, help="Assume gradient checkpointing in every phase."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan(
    recipe: str,
    overrides: tuple[str, ...],
    gpu: str,
    new_tokens: int | None,
    gradient_checkpointing: bool,
    as_json: bool,
) -> None:
    """Estimate the peak GPU memory of each phase of RECIPE, without loading the model.

    Uses the preset's architecture numbers (model.preset), or the config.json of a local
    model directory. Prints the terms of each estimate, whether it fits the GPU, and what to
    change when it does not. Exits 0 when every phase fits, 1 when one does not, 2 for bad input.
    """
    from wake2vec.plan_recipe import plan_recipe
    from wake2vec.recipe import load_recipe

    resolved = load_recipe(recipe, overrides)
    result = plan_recipe(
        resolved, gpu=gpu, new_tokens=new_tokens, gradient_checkpointing=gradient_checkpointing
    )
    if as_json:
        click.echo(result.to_json())
    else:
        click.echo(render(result))
    if not result.fits:
        click.get_current_context().exit(1)


def render(result) -> str:
    """The plan as text for people."""
    head = "untied: new input and output rows train" if not result.tied else "tied: one matrix"
    body = "NF4 body" if result.quantization == "nf4" else f"{result.dtype} weights"
    lines = [
        f"model       {result.model} ({body}, {result.dtype} compute; head {head})",
        f"new ids     {result.new_tokens:,} ({result.trainable_rows:,} trainable rows) -> "
        f"{result.rows_after_injection:,} embedding rows",
        f"GPU         {result.gpu}: {result.gpu_name}, {result.capacity_gib:.1f} GiB usable",
    ]
    for phase in result.phases:
        gc = "with" if phase.gradient_checkpointing else "no"
        kind = "LoRA adapters" if phase.kind == "lora" else "new embedding rows"
        lines += [
            "",
            f"phase {phase.name}: {kind}; seq {phase.seq_len}, batch {phase.batch_size}, "
            f"{phase.optimizer}, {gc} gradient checkpointing",
        ]
        lines += [f"  {term:<16}{gib:8.2f} GiB" for term, gib in phase.terms_gib.items()]
        verdict = "fits" if phase.fits else "DOES NOT FIT"
        other = (
            phase.total_without_checkpointing_gib
            if phase.gradient_checkpointing
            else phase.total_with_checkpointing_gib
        )
        lines.append(
            f"  {'total':<16}{phase.total_gib:8.2f} GiB  {verdict} "
            f"({'without' if phase.gradient_checkpointing else 'with'} gradient checkpointing: "
            f"{other:.2f} GiB)"
        )
        if phase.advice:
            lines.append("  to fit, change one of:")
            lines += [f"    - {item}" for item in phase.advice]
    if result.notes:
        lines += ["", *[f"note: {n}" for n in result.notes]]
    lines.append("")
    lines.append(
        "Estimates from architecture numbers, calibrated to within 25% of the study's "
        "measurements (see wake2vec/plan.py)."
    )
    return "\n".join(lines)
