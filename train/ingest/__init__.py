"""Reading and validating interaction data: files in, checked :class:`Interactions` out.

The public surface is small; the modules behind it each hold one step:

- :mod:`.formats` finds the input files and sniffs their format (CSV/TSV, Parquet, JSON lines);
- :mod:`.readers` reads one file into an Arrow table;
- :mod:`.columns` maps header names to roles (user, item, timestamp, value, event type);
- :mod:`.converters` turns columns into ids, numbers and Unix seconds;
- :mod:`.options` holds :class:`ImportOptions`, parsed once from hyperparameters;
- :mod:`.importer` runs the steps and builds the :class:`~mfrec.train.interactions.Interactions`;
- :mod:`.report` summarises what was read and refuses data too small to train on;
- :mod:`.items` reads item metadata files (Personalize's Items dataset);
- :mod:`.synth` and :mod:`.datasets` make synthetic data and the embedded default dataset.

Nothing here imports torch.
"""

import importlib

# Each name is imported from its module on first use (PEP 562): the importer brings pandas
# (half a second), which ``mfrec serve`` never needs but would pay for when its command line is
# built (the CLI reads ``options.CHOICES``, and importing any submodule runs this file first).
_HOMES = {
    "default_dataset_path": "datasets",
    "default_items_path": "datasets",
    "interactions_to_table": "importer",
    "load_interactions": "importer",
    "read_item_attributes": "items",
    "ImportOptions": "options",
    "DataReport": "report",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DataReport",
    "ImportOptions",
    "default_dataset_path",
    "default_items_path",
    "interactions_to_table",
    "load_interactions",
    "read_item_attributes",
]
