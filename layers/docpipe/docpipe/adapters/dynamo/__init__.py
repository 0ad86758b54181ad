"""DynamoDB: the jobs and files tables. Racing writes are settled by condition expressions.

One module per table (:mod:`.jobs`, :mod:`.files`) over the shared :mod:`.table`; the usage table's
repository is :mod:`docpipe.adapters.usage`.
"""

from docpipe.adapters.dynamo.files import FilesRepository
from docpipe.adapters.dynamo.jobs import JobsRepository, StateQuery, owner_hash
from docpipe.adapters.dynamo.table import _dump, _fault, _is_condition_failure, _load, _plain, _Table

__all__ = [
    "FilesRepository",
    "JobsRepository",
    "StateQuery",
    "_Table",
    "_dump",
    "_fault",
    "_is_condition_failure",
    "_load",
    "_plain",
    "owner_hash",
]
