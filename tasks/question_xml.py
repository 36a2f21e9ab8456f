"""MTurk question XML (HTMLQuestion / ExternalQuestion) and asset-URL retargeting.

A rendered HIT page (``tasks/hits/<hit_key>.html``) refers to its images with URLs that start
with the literal prefix :data:`ASSET_PREFIX` (``../assets/``) so that it opens from disk; a
publisher retargets them to wherever it serves the assets (:func:`retarget_assets`) before
wrapping the page in an ``HTMLQuestion`` (:func:`html_question`). See ../shared/MTURK.md.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

__all__ = [
    "ASSET_PREFIX",
    "EXTERNAL_QUESTION_NS",
    "HTML_QUESTION_NS",
    "QUESTION_MAX_BYTES",
    "QuestionTooLargeError",
    "external_question",
    "html_question",
    "retarget_assets",
]

HTML_QUESTION_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
)
EXTERNAL_QUESTION_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
)
QUESTION_MAX_BYTES = 65_535
ASSET_PREFIX = "../assets/"


class QuestionTooLargeError(ValueError):
    """The question XML exceeds MTurk's 65,535-byte limit."""


def retarget_assets(html: str, asset_base_url: str) -> str:
    """Point every ``../assets/<file>`` URL of a HIT page at ``asset_base_url`` + ``<file>``.

    Parameters
    ----------
    html : str
        A page written by ``sparse-probe tasks build``.
    asset_base_url : str
        Base URL ending in ``/`` (e.g. ``http://127.0.0.1:8000/assets/<batch>/``).
    """
    if not asset_base_url.endswith("/"):
        asset_base_url += "/"
    return html.replace(ASSET_PREFIX, asset_base_url)


def _check_size(xml: str, what: str) -> str:
    size = len(xml.encode("utf-8"))
    if size > QUESTION_MAX_BYTES:
        raise QuestionTooLargeError(
            f"{what}: question XML is {size} bytes, MTurk allows at most {QUESTION_MAX_BYTES}; "
            "serve large assets by URL instead of inlining them"
        )
    return xml


def html_question(html: str, frame_height: int = 0, *, what: str = "HIT") -> str:
    """Wrap a complete HTML document in MTurk's ``HTMLQuestion`` XML.

    Parameters
    ----------
    html : str
        The page; it must not contain the CDATA terminator ``]]>``.
    frame_height : int, default 0
        Iframe height in pixels; 0 lets MTurk fit the window.
    what : str
        Name used in error messages (e.g. the HIT key).

    Raises
    ------
    QuestionTooLargeError
        If the XML exceeds 65,535 bytes (UTF-8).
    """
    if "]]>" in html:
        raise ValueError(f"{what}: HTML contains ']]>', which cannot be embedded in CDATA")
    if frame_height < 0:
        raise ValueError(f"{what}: frame_height must be >= 0")
    xml = (
        f'<HTMLQuestion xmlns="{HTML_QUESTION_NS}">'
        f"<HTMLContent><![CDATA[{html}]]></HTMLContent>"
        f"<FrameHeight>{int(frame_height)}</FrameHeight></HTMLQuestion>"
    )
    return _check_size(xml, what)


def external_question(url: str, frame_height: int = 0, *, what: str = "HIT") -> str:
    """MTurk ``ExternalQuestion`` XML for a page served at ``url`` (MTurk requires HTTPS)."""
    xml = (
        f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NS}">'
        f"<ExternalURL>{escape(url)}</ExternalURL>"
        f"<FrameHeight>{int(frame_height)}</FrameHeight></ExternalQuestion>"
    )
    return _check_size(xml, what)
