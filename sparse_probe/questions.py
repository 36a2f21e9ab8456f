"""The question schema: what a HIT asks, which answers are allowed and what each one means.

One :class:`QuestionSchema` is the single home of the questions of a study. From it

- both HIT templates render their questions (``hit_templates/base.html`` for the pages
  published through the API or our task server, ``hit_templates/mturk_template.html`` for
  MTurk's requester website), so the wording cannot drift between them;
- a submission is checked (:meth:`QuestionSchema.validate`: unknown value, missing answer);
- analysis reads what an answer *means* (:meth:`QuestionSchema.meaning`): ``core``,
  ``spurious`` with a kind (background, mark, identity, other), ``no_pattern`` or ``unsure``.

The built-in schema (:func:`default_schema`) reproduces the form fields of
docs/contracts.md exactly (``shared``, ``pattern``, ``confidence``, ``description``,
``attention``), so run directories and answers written before it existed stay valid. A study
may bring its own schema as a TOML or JSON file (:func:`load_schema`), e.g.::

    gold_fields = ["shared", "pattern"]

    [[questions]]
    id = "shared"
    role = "presence"
    kind = "choice"
    wording = "Do the highlighted parts of these {examples} share a pattern?"
    values = [
      {value = "yes", label = "Yes", meaning = "pattern"},
      {value = "no", label = "No", meaning = "no_pattern"},
      {value = "unsure", label = "Unsure", meaning = "unsure"},
    ]

Roles tie a question to what analysis does with it: the ``presence`` question (is there a
shared pattern?), the ``pattern`` question (which one; only meaningful when the presence answer
means ``pattern``), ``confidence`` (a 1-k scale), ``description`` (free text) and ``attention``
(the attention check, whose expected answer is per HIT, in the manifest). Wording and labels
may use the placeholders ``{class_name}``, ``{examples}`` ("images" / "comments") and
``{attention_number}``.
"""

from __future__ import annotations

import json
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

__all__ = [
    "ATTENTION",
    "CONFIDENCE",
    "CORE",
    "DESCRIPTION",
    "HIT_KINDS",
    "KINDS",
    "MEANINGS",
    "NO_PATTERN",
    "PATTERN",
    "PRESENCE",
    "ROLES",
    "SCHEMA_FILE",
    "SPURIOUS",
    "SPURIOUS_KINDS",
    "UNSURE",
    "Question",
    "QuestionSchema",
    "RenderedQuestion",
    "SchemaError",
    "Value",
    "default_schema",
    "load_schema",
    "schema_for_tasks",
    "schema_from_dict",
]

#: HIT kinds a value can be offered on.
HIT_KINDS = ("image", "text")
#: Question kinds: one of fixed values, a numeric scale (also fixed values), free text.
KINDS = ("choice", "scale", "text")
#: Roles: what analysis does with a question (``None``: asked and stored, not interpreted).
PRESENCE, PATTERN, CONFIDENCE, DESCRIPTION, ATTENTION = (
    "presence", "pattern", "confidence", "description", "attention")
ROLES = (PRESENCE, PATTERN, CONFIDENCE, DESCRIPTION, ATTENTION)
#: Meanings of answer values. ``pattern``: "there is a shared pattern" (presence question).
CORE, SPURIOUS, NO_PATTERN, UNSURE = "core", "spurious", "no_pattern", "unsure"
MEANINGS = (PATTERN, NO_PATTERN, CORE, SPURIOUS, UNSURE)
#: Kinds of a spurious pattern (``meaning = "spurious"`` values carry one).
SPURIOUS_KINDS = ("background", "mark", "identity", "other")
#: Where a built tasks directory keeps the schema its HITs were rendered from.
SCHEMA_FILE = "questions.json"
_PLACEHOLDERS = frozenset({"class_name", "examples", "attention_number"})
_EXAMPLES = {"image": "images", "text": "comments"}


class SchemaError(ValueError):
    """A question schema (file) is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Value:
    """One allowed answer of a choice or scale question.

    Attributes
    ----------
    value : str
        What the form submits (and what the answers table stores).
    label : str
        What the worker reads (may use the placeholders of the module docstring).
    meaning : str, optional
        One of :data:`MEANINGS`, or ``None`` (no interpretation, e.g. a confidence level).
    spurious_kind : str, optional
        For ``meaning = "spurious"``: one of :data:`SPURIOUS_KINDS` (default ``other``).
    hit_kinds : tuple of str
        The HIT kinds that offer this value (default both).
    label_by_kind : dict
        A different label per HIT kind (``{"text": "..."}``).
    """

    value: str
    label: str
    meaning: str | None = None
    spurious_kind: str | None = None
    hit_kinds: tuple[str, ...] = HIT_KINDS
    label_by_kind: Mapping[str, str] = field(default_factory=dict)

    def label_for(self, hit_kind: str) -> str:
        """The label shown on a HIT of ``hit_kind``."""
        return self.label_by_kind.get(hit_kind, self.label)


@dataclass(frozen=True)
class Question:
    """One form field of a HIT.

    Attributes
    ----------
    id : str
        The form field name (the ``question`` column of the answers table).
    wording : str
        The question as the worker reads it (placeholders allowed).
    kind : {"choice", "scale", "text"}
    values : tuple of Value
        Allowed answers (empty for ``text``).
    role : str, optional
        One of :data:`ROLES`.
    required : bool
        A submission must answer it (non-empty).
    short : str
        A short name for "please answer question ..." messages.
    placeholder : str
        Example text shown in an empty text field.
    max_length : int
        Longest accepted text answer.
    widget : {"radio", "select"}
        How a choice is shown (the attention check is a drop-down).
    """

    id: str
    wording: str
    kind: str
    values: tuple[Value, ...] = ()
    role: str | None = None
    required: bool = True
    short: str = ""
    placeholder: str = ""
    max_length: int = 500
    widget: str = "radio"

    def values_for(self, hit_kind: str | None = None) -> tuple[Value, ...]:
        """The values offered on a HIT of ``hit_kind`` (all values when ``None``)."""
        if hit_kind is None:
            return self.values
        return tuple(v for v in self.values if hit_kind in v.hit_kinds)

    def allowed(self, hit_kind: str | None = None) -> tuple[str, ...]:
        """The form values accepted on a HIT of ``hit_kind``."""
        return tuple(v.value for v in self.values_for(hit_kind))

    def value(self, value: str) -> Value | None:
        """The :class:`Value` for a submitted string (exact, then case-insensitive)."""
        for v in self.values:
            if v.value == value:
                return v
        low = str(value).strip().lower()
        for v in self.values:
            if v.value.lower() == low:
                return v
        return None


@dataclass(frozen=True)
class RenderedQuestion:
    """A question ready for a template: number, wording (Markup), ``(value, label)`` options."""

    id: str
    number: int
    wording: Markup
    kind: str
    widget: str
    options: tuple[tuple[str, str], ...]
    required: bool
    short: str
    placeholder: str
    max_length: int


@dataclass(frozen=True)
class QuestionSchema:
    """The questions of a study, in the order a HIT asks them.

    Attributes
    ----------
    questions : tuple of Question
    gold_fields : tuple of str
        The question ids a gold answer covers (the manifest's ``gold`` object).
    """

    questions: tuple[Question, ...]
    gold_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_schema(self, "schema")

    # ----------------------------------------------------------------- lookups
    @property
    def ids(self) -> tuple[str, ...]:
        """Question ids (form field names) in order."""
        return tuple(q.id for q in self.questions)

    def __getitem__(self, qid: str) -> Question:
        for q in self.questions:
            if q.id == qid:
                return q
        raise KeyError(f"question schema: no question {qid!r} (have {list(self.ids)})")

    def __contains__(self, qid: object) -> bool:
        return any(q.id == qid for q in self.questions)

    def by_role(self, role: str) -> Question | None:
        """The question with ``role`` (see :data:`ROLES`), or ``None``."""
        return next((q for q in self.questions if q.role == role), None)

    def field_for(self, role: str) -> str | None:
        """The form field name of the question with ``role``, or ``None``."""
        q = self.by_role(role)
        return q.id if q is not None else None

    @property
    def categorical(self) -> tuple[str, ...]:
        """Ids of the questions aggregated into a verdict (presence, then pattern)."""
        return tuple(q for q in (self.field_for(PRESENCE), self.field_for(PATTERN)) if q)

    def meaning(self, question: str, value: Any) -> str | None:
        """What an answer means (one of :data:`MEANINGS`), ``None`` if nothing / unknown."""
        if question not in self or value is None:
            return None
        v = self[question].value(str(value))
        return v.meaning if v is not None else None

    def spurious_kind(self, question: str, value: Any) -> str | None:
        """The spurious kind of an answer meaning ``spurious`` (else ``None``)."""
        if question not in self or value is None:
            return None
        v = self[question].value(str(value))
        if v is None or v.meaning != SPURIOUS:
            return None
        return v.spurious_kind or "other"

    def values_meaning(self, question: str, meaning: str) -> tuple[str, ...]:
        """The values of ``question`` whose meaning is ``meaning``."""
        if question not in self:
            return ()
        return tuple(v.value for v in self[question].values if v.meaning == meaning)

    def abstentions(self) -> frozenset[str]:
        """Lower-cased values that mean ``unsure`` in any question."""
        return frozenset(v.value.lower() for q in self.questions for v in q.values
                         if v.meaning == UNSURE)

    def value_for(self, question: str, meaning: str, spurious_kind: str | None = None,
                  hit_kind: str | None = None) -> str | None:
        """The form value of ``question`` meaning ``meaning`` (and ``spurious_kind``).

        The inverse of :meth:`meaning`: e.g. ``value_for("pattern", "spurious", "mark")`` is
        ``"mark"`` in the built-in schema. ``None`` when the question offers no such value.
        """
        if question not in self:
            return None
        for v in self[question].values_for(hit_kind):
            if v.meaning != meaning:
                continue
            if meaning == SPURIOUS and spurious_kind is not None and \
                    (v.spurious_kind or "other") != spurious_kind:
                continue
            return v.value
        return None

    def gold_for_truth(self, truth: str | None, hit_kind: str | None = None
                       ) -> dict[str, str] | None:
        """The answers a careful worker gives for a manifest ``truth``, over ``gold_fields``.

        ``truth`` is ``"core"``, ``"spurious:<kind>"`` or ``"none"`` (docs/contracts.md). The
        presence question gets its value meaning ``pattern`` (``none``: ``no_pattern``), the
        pattern question the value meaning ``core`` / that spurious kind (``none``: the
        spurious ``other`` value, "something else"). Built-in: ``{"shared": "yes",
        "pattern": "mark"}`` for ``spurious:mark``. ``None`` when there is no truth or the
        schema has no value with the needed meaning.
        """
        if truth is None:
            return None
        presence, pattern = self.field_for(PRESENCE), self.field_for(PATTERN)
        if truth == "none":
            wanted = {presence: self.value_for(presence or "", NO_PATTERN, hit_kind=hit_kind),
                      pattern: self.value_for(pattern or "", SPURIOUS, "other", hit_kind)}
        else:
            meaning, _, kind = truth.partition(":")
            if meaning not in (CORE, SPURIOUS):
                return None
            wanted = {presence: self.value_for(presence or "", PATTERN, hit_kind=hit_kind),
                      pattern: self.value_for(pattern or "", meaning, kind or "other",
                                              hit_kind)}
        fields = self.gold_fields or tuple(f for f in wanted if f)
        out = {f: wanted.get(f) for f in fields}
        if any(v is None for v in out.values()):
            return None
        return {f: str(v) for f, v in out.items()}

    # ----------------------------------------------------------------- validation
    def validate(self, fields: Mapping[str, Any], hit_kind: str | None = None) -> list[str]:
        """Problems of a submitted form (empty list: the submission is valid).

        Parameters
        ----------
        fields : mapping
            Form field name -> submitted value (a list for a repeated field). Fields that are
            not questions (``assignmentId``, ``hit_key``, ...) are ignored.
        hit_kind : {"image", "text"}, optional
            The kind of the HIT; values offered only on the other kind are then refused.

        Returns
        -------
        list of str
            One line per problem, naming the field: a missing required answer, a value the
            question does not allow, a text longer than allowed, a repeated field.
        """
        problems: list[str] = []
        for q in self.questions:
            raw = fields.get(q.id)
            if isinstance(raw, list | tuple):
                if len(raw) > 1:
                    problems.append(f"{q.id}: {len(raw)} values given, expected one")
                    continue
                raw = raw[0] if raw else None
            text = "" if raw is None else str(raw)
            if not text.strip():
                if q.required:
                    problems.append(f"{q.id}: missing (required)")
                continue
            if q.kind == "text":
                if len(text) > q.max_length:
                    problems.append(f"{q.id}: {len(text)} characters, at most {q.max_length}")
                continue
            allowed = q.allowed(hit_kind)
            if text not in allowed:
                problems.append(f"{q.id}: {text!r} is not one of {list(allowed)}")
        return problems

    # ----------------------------------------------------------------- rendering
    def render(self, hit_kind: str, *, class_name: str, attention_number: str
               ) -> list[RenderedQuestion]:
        """The questions of a HIT of ``hit_kind``, numbered, with placeholders filled.

        Texts are escaped (the result is :class:`markupsafe.Markup`); the attention number is
        shown in bold.
        """
        if hit_kind not in HIT_KINDS:
            raise ValueError(f"hit kind must be one of {HIT_KINDS}, got {hit_kind!r}")
        subs = {"class_name": class_name, "examples": _EXAMPLES[hit_kind],
                "attention_number": Markup("<strong>%s</strong>") % attention_number}
        plain = {**subs, "attention_number": attention_number}
        out = []
        for i, q in enumerate(self.questions, start=1):
            options = tuple((v.value, str(v.label_for(hit_kind)).format(**plain))
                            for v in q.values_for(hit_kind))
            out.append(RenderedQuestion(
                id=q.id, number=i, wording=Markup(escape(q.wording)).format(**subs),
                kind=q.kind, widget=q.widget, options=options, required=q.required,
                short=f"{i} ({q.short or q.id})", placeholder=q.placeholder,
                max_length=q.max_length))
        return out

    # ----------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        """Plain data, the format :func:`load_schema` reads (JSON or TOML)."""
        def value(v: Value) -> dict[str, Any]:
            d: dict[str, Any] = {"value": v.value, "label": v.label}
            if v.meaning is not None:
                d["meaning"] = v.meaning
            if v.spurious_kind is not None:
                d["spurious_kind"] = v.spurious_kind
            if tuple(v.hit_kinds) != HIT_KINDS:
                d["hit_kinds"] = list(v.hit_kinds)
            if v.label_by_kind:
                d["label_by_kind"] = dict(v.label_by_kind)
            return d

        qs = []
        for q in self.questions:
            d: dict[str, Any] = {"id": q.id, "wording": q.wording, "kind": q.kind}
            if q.role is not None:
                d["role"] = q.role
            d.update(required=q.required, short=q.short, placeholder=q.placeholder,
                     max_length=q.max_length, widget=q.widget)
            if q.values:
                d["values"] = [value(v) for v in q.values]
            qs.append(d)
        return {"format": 1, "gold_fields": list(self.gold_fields), "questions": qs}


# --------------------------------------------------------------------------- checks
def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _check_schema(schema: QuestionSchema, where: str) -> None:
    ids: set[str] = set()
    for q in schema.questions:
        at = f"{where}: question {q.id!r}"
        if not q.id or not q.id.isidentifier():
            raise SchemaError(f"{where}: question id {q.id!r} is not a valid form field name")
        if q.id in ids:
            raise SchemaError(f"{at}: duplicate id")
        ids.add(q.id)
        if q.kind not in KINDS:
            raise SchemaError(f"{at}: kind {q.kind!r} is not one of {list(KINDS)}")
        if q.role is not None and q.role not in ROLES:
            raise SchemaError(f"{at}: role {q.role!r} is not one of {list(ROLES)}")
        if q.widget not in ("radio", "select"):
            raise SchemaError(f"{at}: widget {q.widget!r} is not 'radio' or 'select'")
        bad = _placeholders(q.wording) - _PLACEHOLDERS
        if bad:
            raise SchemaError(f"{at}: wording uses unknown placeholder(s) {sorted(bad)}; "
                              f"allowed {sorted(_PLACEHOLDERS)}")
        if q.kind == "text" and q.values:
            raise SchemaError(f"{at}: a text question has no values")
        if q.kind != "text" and not q.values:
            raise SchemaError(f"{at}: a {q.kind} question needs values")
        for hk in HIT_KINDS:
            seen = [v.value for v in q.values_for(hk)]
            if len(seen) != len(set(seen)):
                raise SchemaError(f"{at}: a value is repeated on {hk} HITs")
        for v in q.values:
            vat = f"{at}: value {v.value!r}"
            if not v.value:
                raise SchemaError(f"{at}: empty value")
            if v.meaning is not None and v.meaning not in MEANINGS:
                raise SchemaError(f"{vat}: meaning {v.meaning!r} is not one of {list(MEANINGS)}")
            if v.spurious_kind is not None and (v.meaning != SPURIOUS
                                                or v.spurious_kind not in SPURIOUS_KINDS):
                raise SchemaError(f"{vat}: spurious_kind needs meaning 'spurious' and one of "
                                  f"{list(SPURIOUS_KINDS)}")
            if not set(v.hit_kinds) <= set(HIT_KINDS) or not v.hit_kinds:
                raise SchemaError(f"{vat}: hit_kinds must be among {list(HIT_KINDS)}")
            if not set(v.label_by_kind) <= set(HIT_KINDS):
                raise SchemaError(f"{vat}: label_by_kind keys must be among {list(HIT_KINDS)}")
            for text in (v.label, *v.label_by_kind.values()):
                bad = _placeholders(text) - _PLACEHOLDERS
                if bad:
                    raise SchemaError(f"{vat}: label uses unknown placeholder(s) {sorted(bad)}")
    roles = [q.role for q in schema.questions if q.role is not None]
    for role in set(roles):
        if roles.count(role) > 1:
            raise SchemaError(f"{where}: more than one question has role {role!r}")
    for g in schema.gold_fields:
        if g not in ids:
            raise SchemaError(f"{where}: gold_fields names {g!r}, which is not a question")
    presence = schema.by_role(PRESENCE)
    if presence is not None and not any(v.meaning == PATTERN for v in presence.values):
        raise SchemaError(f"{where}: question {presence.id!r} (role presence) needs a value "
                          "with meaning 'pattern'")


# --------------------------------------------------------------------------- loading
def _as_str(d: Mapping[str, Any], key: str, at: str, default: str | None = None) -> str:
    if key not in d:
        if default is not None:
            return default
        raise SchemaError(f"{at}: missing field {key!r}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise SchemaError(f"{at}: field {key!r} must be a string, got {type(v).__name__}")
    return str(v)


def _from_dict(data: Any, where: str) -> QuestionSchema:
    if not isinstance(data, Mapping):
        raise SchemaError(f"{where}: expected an object with 'questions'")
    unknown = set(data) - {"format", "gold_fields", "questions"}
    if unknown:
        raise SchemaError(f"{where}: unknown field(s) {sorted(unknown)}")
    raw_qs = data.get("questions")
    if not isinstance(raw_qs, list) or not raw_qs:
        raise SchemaError(f"{where}: field 'questions' must be a non-empty list")
    qfields = {"id", "wording", "kind", "values", "role", "required", "short", "placeholder",
               "max_length", "widget"}
    vfields = {"value", "label", "meaning", "spurious_kind", "hit_kinds", "label_by_kind"}
    questions = []
    for i, rq in enumerate(raw_qs):
        at = f"{where}: questions[{i}]"
        if not isinstance(rq, Mapping):
            raise SchemaError(f"{at}: expected an object")
        if set(rq) - qfields:
            raise SchemaError(f"{at}: unknown field(s) {sorted(set(rq) - qfields)}")
        qid = _as_str(rq, "id", at)
        at = f"{where}: question {qid!r}"
        raw_vals = rq.get("values", [])
        if not isinstance(raw_vals, list):
            raise SchemaError(f"{at}: field 'values' must be a list")
        values = []
        for j, rv in enumerate(raw_vals):
            vat = f"{at}: values[{j}]"
            if isinstance(rv, str | int) and not isinstance(rv, bool):
                rv = {"value": str(rv), "label": str(rv)}
            if not isinstance(rv, Mapping):
                raise SchemaError(f"{vat}: expected an object or a string")
            if set(rv) - vfields:
                raise SchemaError(f"{vat}: unknown field(s) {sorted(set(rv) - vfields)}")
            val = _as_str(rv, "value", vat)
            hk = rv.get("hit_kinds", list(HIT_KINDS))
            lbk = rv.get("label_by_kind", {})
            if not isinstance(hk, list) or not isinstance(lbk, Mapping):
                raise SchemaError(f"{vat}: 'hit_kinds' must be a list, 'label_by_kind' an object")
            values.append(Value(
                value=val, label=_as_str(rv, "label", vat, default=val),
                meaning=rv.get("meaning"), spurious_kind=rv.get("spurious_kind"),
                hit_kinds=tuple(str(k) for k in hk),
                label_by_kind={str(k): str(v) for k, v in lbk.items()}))
        required = rq.get("required", True)
        max_length = rq.get("max_length", 500)
        if not isinstance(required, bool):
            raise SchemaError(f"{at}: field 'required' must be true or false")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise SchemaError(f"{at}: field 'max_length' must be a positive integer")
        questions.append(Question(
            id=qid, wording=_as_str(rq, "wording", at), kind=_as_str(rq, "kind", at),
            values=tuple(values), role=rq.get("role"), required=required,
            short=_as_str(rq, "short", at, default=""),
            placeholder=_as_str(rq, "placeholder", at, default=""), max_length=max_length,
            widget=_as_str(rq, "widget", at, default="radio")))
    gold = data.get("gold_fields", [])
    if not isinstance(gold, list):
        raise SchemaError(f"{where}: field 'gold_fields' must be a list of question ids")
    try:
        return QuestionSchema(tuple(questions), tuple(str(g) for g in gold))
    except SchemaError as exc:
        raise SchemaError(str(exc).replace("schema:", f"{where}:", 1)) from None


def load_schema(path: str | Path) -> QuestionSchema:
    """Read a study's question schema from a ``.toml`` or ``.json`` file.

    Raises
    ------
    SchemaError
        One line naming the file and the field: missing file, bad syntax, a missing or
        unknown field, an unknown kind / role / meaning, a repeated id, a gold field that is
        not a question.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{p}: cannot read question schema ({exc})") from None
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        fmt = "TOML" if p.suffix.lower() == ".toml" else "JSON"
        raise SchemaError(f"{p}: not valid {fmt} ({exc})") from None
    return _from_dict(data, str(p))


def schema_from_dict(data: Mapping[str, Any], where: str = "question schema") -> QuestionSchema:
    """Build a schema from plain data (:meth:`QuestionSchema.to_dict`'s format)."""
    return _from_dict(data, where)


def schema_for_tasks(tasks_dir: str | Path | None) -> QuestionSchema:
    """The schema a tasks directory's HITs were rendered from (``questions.json``), else the
    built-in one (directories built before schemas were recorded)."""
    if tasks_dir is not None:
        p = Path(tasks_dir)
        p = p.parent if p.is_file() else p
        if (p / SCHEMA_FILE).is_file():
            return load_schema(p / SCHEMA_FILE)
    return default_schema()


# --------------------------------------------------------------------------- built-in
def _builtin() -> QuestionSchema:
    both_object = {
        "image": "part of the {class_name} object",
        "text": "words that carry the meaning of \u201c{class_name}\u201d (e.g. insults, praise)",
    }
    return QuestionSchema(
        questions=(
            Question(
                id="shared", role=PRESENCE, kind="choice", short="shared pattern",
                wording="Is there a shared pattern across these {examples}, in the "
                        "highlighted parts or anywhere else?",
                values=(Value("yes", "Yes", PATTERN), Value("no", "No", NO_PATTERN),
                        Value("unsure", "Unsure", UNSURE))),
            Question(
                id="pattern", role=PATTERN, kind="choice", short="pattern",
                wording='What is the pattern? (choose "something else" if there is none)',
                values=(
                    Value("object", both_object["image"], CORE,
                          label_by_kind={"text": both_object["text"]}),
                    Value("background", "the background", SPURIOUS, "background",
                          hit_kinds=("image",)),
                    Value("mark", "a separate object or mark", SPURIOUS, "mark",
                          hit_kinds=("image",)),
                    Value("identity", "text: an identity term (religion, nationality, "
                          "ethnicity, gender, ...)", SPURIOUS, "identity", hit_kinds=("text",)),
                    Value("other", "something else", SPURIOUS, "other"))),
            Question(
                id="confidence", role=CONFIDENCE, kind="scale", short="confidence",
                wording="How confident are you? (1 = guessing, 5 = certain)",
                values=tuple(Value(str(i), str(i)) for i in range(1, 6))),
            Question(
                id="description", role=DESCRIPTION, kind="text", short="description",
                wording="Describe the pattern in a few words", max_length=500,
                placeholder='e.g. "green grass", "a logo in the corner", "nationality words"'),
            Question(
                id="attention", role=ATTENTION, kind="choice", widget="select",
                short="attention check",
                wording="Attention check: select the number shown here: {attention_number}",
                values=tuple(Value(str(i), str(i)) for i in range(1, 10))),
        ),
        gold_fields=("shared", "pattern"),
    )


@lru_cache(maxsize=1)
def default_schema() -> QuestionSchema:
    """The built-in schema: the form fields of docs/contracts.md."""
    return _builtin()
