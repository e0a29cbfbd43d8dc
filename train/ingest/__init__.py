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

from mfrec.train.ingest.datasets import default_dataset_path, default_items_path
from mfrec.train.ingest.importer import interactions_to_table, load_interactions
from mfrec.train.ingest.items import read_item_attributes
from mfrec.train.ingest.options import ImportOptions
from mfrec.train.ingest.report import DataReport

__all__ = [
    "DataReport",
    "ImportOptions",
    "default_dataset_path",
    "default_items_path",
    "interactions_to_table",
    "load_interactions",
    "read_item_attributes",
]
