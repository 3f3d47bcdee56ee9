"""Organisations: members with a role, teams, team grants, service accounts.

An organisation is a ``User`` row of kind ``org`` (see ``registry.models.users``):
it owns resources at ``/<org>/<name>`` like a person. Who may do what with
them is decided in ``registry.access`` only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from registry.models.querysets import AccessQuerySet
from registry.models.sharing import AccessLevel


class OrgRole(models.TextChoices):
    """An org member's role: members read every org resource, admins own them."""

    ADMIN = "admin"
    MEMBER = "member"


class Membership(models.Model):
    """A person's (or a service account's) role in an organisation."""

    org = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                            related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="org_memberships")
    role = models.CharField(max_length=8, choices=OrgRole.choices, default=OrgRole.MEMBER)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                 related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AccessQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "user"], name="membership_org_user_unique"),
        ]
        indexes = [models.Index(fields=["user", "org"], name="membership_user_org")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.role} of {self.org_id}"


class PendingMembership(models.Model):
    """A membership promised to an email address without an account; it binds
    to the account made through the invitation sent with it."""

    org = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                            related_name="pending_memberships")
    email = models.EmailField()
    role = models.CharField(max_length=8, choices=OrgRole.choices, default=OrgRole.MEMBER)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint("org", Lower("email"), name="pending_member_org_email_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.email} {self.role} of {self.org_id}"


class Team(models.Model):
    """A named group of an organisation's members, ``<org>/<team>`` where it is shared with."""

    org = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                            related_name="teams")
    name = models.CharField(max_length=39)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AccessQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint("org", Lower("name"), name="team_org_name_ci_unique"),
        ]

    def __str__(self) -> str:
        return f"team {self.name} of {self.org_id}"


class TeamMember(models.Model):
    """A person in a team (they are a member of its organisation)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="team_memberships")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                 related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AccessQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="team_member_unique"),
        ]
        indexes = [models.Index(fields=["user", "team"], name="team_member_user_team")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.team_id}"


class TeamGrant(models.Model):
    """A team's ``read`` or ``write`` access to one resource (by id)."""

    resource = models.ForeignKey("registry.Resource", on_delete=models.CASCADE,
                                 related_name="team_grants")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="grants")
    level = models.PositiveSmallIntegerField(choices=AccessLevel.choices)
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AccessQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["resource", "team"], name="team_grant_unique"),
        ]
        indexes = [models.Index(fields=["team", "resource"], name="team_grant_team_resource")]

    def __str__(self) -> str:
        return f"team {self.team_id} {self.get_level_display()} on {self.resource_id}"


class ServiceAccount(models.Model):
    """An organisation's non-human caller (an Airflow connection, a CI job).

    Its ``user`` (kind ``service``, username ``<org>:<name>``) holds its
    tokens and its ``Membership`` (its role). It has no password and never
    signs in to the web UI. Deleting it deletes that user, and so its tokens.
    """

    org = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                            related_name="service_accounts")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="service_account")
    name = models.CharField(max_length=39)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint("org", Lower("name"), name="service_account_org_name_unique"),
        ]

    def __str__(self) -> str:
        return f"service account {self.name} of {self.org_id}"
