"""Recipes: the TOML files that describe a whole study."""

from __future__ import annotations

from wake2vec.recipe.load import load_recipe, recipe_to_dict, recipe_to_json
from wake2vec.recipe.schema import Recipe

__all__ = ["Recipe", "load_recipe", "recipe_to_dict", "recipe_to_json"]
