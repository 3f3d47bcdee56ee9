"""``manage.py invite EMAIL``: invite someone to create an account.

Prints the invitation link once (the email goes out too), which is how an
administrator of a den without a mail server hands it over. Without
``DEN_PUBLIC_URL`` in its environment, the link uses the URL that
``manage.py serve`` last served at under the same ``DEN_HOME``.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from registry import services
from registry.errors import DenError
from registry.management.commands.serve import read_served_url


class Command(BaseCommand):
    help = "Invite someone by email; prints the sign-up link once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("email")
        parser.add_argument("--as", dest="inviter", default=None,
                            help="the administrator the invitation comes from")

    def handle(self, *args: Any, **options: Any) -> None:
        served = read_served_url()
        if not os.environ.get("DEN_PUBLIC_URL") and served:
            settings.DEN_PUBLIC_URL = served  # the link in the email too
        users = get_user_model()
        inviter = (
            users.objects.filter(username=options["inviter"]).first()
            if options["inviter"]
            else users.objects.filter(is_superuser=True).order_by("pk").first()
        )
        if inviter is None:
            raise CommandError("No such administrator; create one with createsuperuser first.")
        try:
            invitation = services.invitation_create(actor=inviter, email=options["email"])
        except DenError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"Invited {invitation.email}. Send them this link (it works once, for "
            f"a limited time):\n{services.invitation_url(invitation.plain_token)}"
        )
