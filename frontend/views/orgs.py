"""Organisation pages: my organisations (and making one), and an org's
settings (members and roles, teams, service accounts and their tokens).
Every read goes through ``registry.selectors`` (``access_org`` decides who
is a member or an admin), every change through ``registry.services``."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from frontend.views.base import FORM_ERROR_STATUS, DenPageView
from registry import selectors, services
from registry.errors import DenError, InvalidInput
from registry.models import OrgRole, TokenScope


def _names(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


class OrgListView(DenPageView):
    """``/settings/orgs``: the organisations I belong to; make a new one."""

    template = "frontend/settings/orgs.html"

    def context(self, **extra: Any) -> dict[str, Any]:
        return {"tab": "orgs", "orgs": selectors.org_list(caller=self.caller), **extra}

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render_page(self.template, self.context())

    def post(self, request: HttpRequest) -> HttpResponse:
        name = request.POST.get("name", "").strip()
        try:
            org = services.org_create(actor=request.user, name=name,
                                      description=request.POST.get("description", "").strip())
        except DenError as exc:
            return self.render_page(self.template, self.context(error=self.error_text(exc),
                                                                form=request.POST),
                                    status=FORM_ERROR_STATUS)
        messages.success(request, f"Created {org.username}; you are its admin.")
        return HttpResponseRedirect(f"/{org.username}/-/settings")


class OrgSettingsView(DenPageView):
    """``/<org>/-/settings``, for the org's admins: members and their roles,
    teams and who is in them, service accounts and their tokens (a new
    token is shown in the response that made it, once)."""

    template = "frontend/orgs/settings.html"

    ACTIONS = ("add_members", "remove_member", "create_team", "delete_team", "add_team_members",
               "remove_team_member", "create_sa", "delete_sa", "create_sa_token")

    def context(self, org: Any, **extra: Any) -> dict[str, Any]:
        teams = []
        for team in selectors.org_teams(org=org):
            team.people = selectors.team_members(team=team)
            teams.append(team)
        accounts = []
        for account in selectors.service_accounts(org=org):
            account.tokens = list(selectors.service_account_tokens(account=account))
            accounts.append(account)
        return {"org": org, "roles": OrgRole.values, "scopes": TokenScope.values,
                "teams": teams, "accounts": accounts, **selectors.org_members(org=org), **extra}

    def get(self, request: HttpRequest, owner: str) -> HttpResponse:
        org = selectors.org_get(caller=self.caller, name=owner, admin=True)
        return self.render_page(self.template, self.context(org))

    def post(self, request: HttpRequest, owner: str) -> HttpResponse:
        org = selectors.org_get(caller=self.caller, name=owner, admin=True)
        action = request.POST.get("action", "")
        form = request.POST
        try:
            if action not in self.ACTIONS:
                raise InvalidInput("Unknown action.", field="action")
            done, extra = self._act(request, org, action, form)
        except DenError as exc:
            return self.render_page(self.template,
                                    self.context(org, error=self.error_text(exc), action=action),
                                    status=FORM_ERROR_STATUS)
        if extra:  # a new token: shown in this response only, never stored
            response = self.render_page(self.template, self.context(org, notice=done, **extra))
            response["Cache-Control"] = "no-store"
            return response
        messages.success(request, done)
        return HttpResponseRedirect(f"/{org.username}/-/settings")

    def _act(self, request: HttpRequest, org: Any, action: str, form: Any
             ) -> tuple[str, dict[str, Any]]:
        actor = request.user
        if action == "add_members":
            result = services.org_members_add(actor=actor, org=org,
                                              users=_names(form.get("users", "")),
                                              role=form.get("role", "member"))
            role, added = form.get("role", "member"), result["added"]
            parts = [f"Added {', '.join(added)} as {role}{'s' if len(added) > 1 else ''}."
                     ] if added else []
            if result["invited"]:
                parts.append(f"Invited {', '.join(result['invited'])} by email.")
            return " ".join(parts), {}
        if action == "remove_member":
            services.org_member_remove(actor=actor, org=org, who=form.get("who", ""))
            return f"Removed {form.get('who')} from {org.username}.", {}
        if action == "create_team":
            team = services.team_create(actor=actor, org=org, name=form.get("name", "").strip())
            return f"Created the team {org.username}/{team.name}.", {}
        team_name = form.get("team", "")
        if action == "delete_team":
            services.team_delete(actor=actor, team=selectors.org_team_get(org=org, name=team_name))
            return f"Deleted the team {org.username}/{team_name}.", {}
        if action == "add_team_members":
            team = selectors.org_team_get(org=org, name=team_name)
            added = services.team_members_add(actor=actor, team=team,
                                              users=_names(form.get("users", "")))
            return f"Added {', '.join(added)} to {org.username}/{team.name}.", {}
        if action == "remove_team_member":
            team = selectors.org_team_get(org=org, name=team_name)
            services.team_member_remove(actor=actor, team=team, username=form.get("who", ""))
            return f"Removed {form.get('who')} from {org.username}/{team.name}.", {}
        if action == "create_sa":
            account = services.service_account_create(
                actor=actor, org=org, name=form.get("name", "").strip(),
                role=form.get("role", "member"))
            return f"Created the service account {account.user.username}.", {}
        account = selectors.service_account_get(org=org, name=form.get("account", ""))
        if action == "delete_sa":
            services.service_account_delete(actor=actor, account=account)
            return f"Deleted {account.user.username}; its tokens no longer work.", {}
        token, plain = services.service_account_token_create(
            actor=actor, account=account, name=form.get("name", ""),
            scope=form.get("scope", TokenScope.READ))
        return (f"Made the token {token.name!r} for {account.user.username}: copy it now, it is "
                "not shown again.", {"new_token_plain": plain, "new_token": token})
