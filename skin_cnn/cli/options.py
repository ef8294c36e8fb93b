"""Options shared by several commands, so every command spells them the same way."""
import click

out_option = click.option(
    "-o", "--out", "out", required=True, type=click.Path(), help="Output file or folder."
)
seed_option = click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
