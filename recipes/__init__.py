"""The recipes that ship with posttrain, as package data (`posttrain.recipes`); read with `posttrain.recipe.shipped`.

A regular package, not a namespace one: importlib.resources cannot read a namespace package that an editable
install maps from here.
"""
