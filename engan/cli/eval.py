"""`engan eval` (placeholder until its issue lands)."""
import click


@click.command("eval")
def eval_cmd() -> None:
    """Not implemented yet."""
    raise click.ClickException("`engan eval` is not implemented yet")
