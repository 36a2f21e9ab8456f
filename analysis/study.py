"""Study files for analysis (``sparse-probe report --study``).

The study file format, its reader and the CSV reader live in :mod:`sparse_probe.study`, shared
with ``tasks ingest-csv --study`` (``tasks`` and ``analysis`` never import each other); this
module re-exports them under the names analysis code uses.
"""

from sparse_probe.study import (
    COLUMN_FIELDS,
    RULES,
    Rule,
    Study,
    StudyAnswers,
    StudyError,
    load_study,
    read_study_answers,
    study_answers_table,
    study_from_dict,
)

__all__ = [
    "COLUMN_FIELDS",
    "RULES",
    "Rule",
    "Study",
    "StudyAnswers",
    "StudyError",
    "load_study",
    "read_study_answers",
    "study_answers_table",
    "study_from_dict",
]
