"""Mails that are not a sign-in flow's: new-device notices, the code that confirms a new
address, the notice to an old address. What to say (a template set per kind), not how it is
sent: the Mailer's queue sends them (delivery/mail.py).

Each kind is three templates in email_templates/: `<kind>.subject.txt`, `<kind>.txt` and
`<kind>.html`. A deployment's EMAIL_TEMPLATES_DIR is searched first and Latch's own folder
after it, so an operator who wrote only the sign-in mail still sends these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import jinja2

from service.errors import ConfigError

BUILT_IN = Path(__file__).resolve().parents[2] / "email_templates"


class NoticeKind(StrEnum):
    """The kinds of notice, each a set of templates."""

    NEW_DEVICE = "new_device"
    CONFIRM_ADDRESS = "confirm_address"
    ADDRESS_CHANGED = "address_changed"


@dataclass(frozen=True, kw_only=True)
class Notice:
    """One mail to send. A secret it carries (a code, a link) exists only here and in the
    message, never on disk; `ref` names it in logs instead."""

    kind: NoticeKind
    to: str
    ref: str
    # Retries stop here: a notice about a sign-in or a code is worth nothing later.
    expires_at: int
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    """A notice's subject and both bodies."""

    subject: str
    text: str
    html: str


class NoticeTemplates:
    """Every notice's templates, compiled once at start (a broken one stops start-up)."""

    def __init__(self, templates_dir: Path) -> None:
        dirs = [str(templates_dir), str(BUILT_IN)]
        html = jinja2.Environment(loader=jinja2.FileSystemLoader(dirs), autoescape=True)
        # Plain text is not escaped: every value a requester can influence is flattened and
        # cut in the templates themselves, as in the sign-in mail's body.txt.
        text = jinja2.Environment(loader=jinja2.FileSystemLoader(dirs), autoescape=False)  # noqa: S701
        try:
            self._sets = {
                kind: (
                    text.get_template(f"{kind}.subject.txt"),
                    text.get_template(f"{kind}.txt"),
                    html.get_template(f"{kind}.html"),
                )
                for kind in NoticeKind
            }
        except jinja2.TemplateError as e:
            raise ConfigError(
                f"the notice templates in {templates_dir} (or Latch's own) do not compile: "
                f"{type(e).__name__}: {e}"
            ) from e

    def render(self, notice: Notice, common: Mapping[str, str]) -> Rendered:
        """The notice's three parts, with the brand's values (`common`) and its own."""
        context = {**common, **notice.context, "email": notice.to}
        subject, text, html = self._sets[notice.kind]
        return Rendered(subject.render(context), text.render(context), html.render(context))
