"""Worker answers for the ``tasks`` stages: re-exports of :mod:`sparse_probe.answers`.

The answers table, its one reader and atomic writer, QuestionFormAnswers XML and the one MTurk
batch-results CSV reader live in :mod:`sparse_probe.answers`, shared with ``analysis``; this
module keeps the names ``tasks`` code and older callers import.
"""

from __future__ import annotations

from sparse_probe.answers import (
    ANSWER_COLUMNS,
    IGNORED_FIELDS,
    QFA_NS,
    AnswersFormatError,
    answers_frame,
    assignment_rows,
    build_question_form_answers,
    merge_answers,
    parse_mturk_time,
    parse_question_form_answers,
    read_answers,
    read_batch_csv,
    write_answers,
)

__all__ = [
    "ANSWER_COLUMNS",
    "IGNORED_FIELDS",
    "QFA_NS",
    "AnswersFormatError",
    "answers_frame",
    "assignment_rows",
    "build_question_form_answers",
    "merge_answers",
    "parse_mturk_time",
    "parse_question_form_answers",
    "read_answers",
    "read_batch_csv",
    "write_answers",
]
