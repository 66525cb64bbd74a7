"""`engan train` (placeholder until its issue lands)."""
import click


@click.command("train")
def train() -> None:
    """Not implemented yet."""
    raise click.ClickException("`engan train` is not implemented yet")
