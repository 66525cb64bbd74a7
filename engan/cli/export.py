"""`engan export` (placeholder until its issue lands)."""
import click


@click.command("export")
def export() -> None:
    """Not implemented yet."""
    raise click.ClickException("`engan export` is not implemented yet")
