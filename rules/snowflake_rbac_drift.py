"""Declared-grants drift: a role/grant model kept in YAML, compared with the grants ACCOUNT_USAGE lists.

Pure. The model names the roles it manages, each role's privileges on objects, and who holds
the role (users and roles). Only those roles are compared: roles the model does not name
(SYSADMIN, a team's scratch role) are someone else's business. Per managed role:

- a grant present but not declared -> `snowflake-grant-not-declared` (warning: someone granted by hand);
- a grant declared but not present -> `snowflake-grant-missing` (warning: the model was not applied);
- a declared role that does not exist -> `snowflake-declared-role-missing` (its grants are not listed).

```yaml
# config/snowflake_roles.yaml: one file per account (`declared_grants` maps block -> file)
ignore_privileges: [OWNERSHIP]     # optional; the default. Owning what a role creates is not drift.
roles:
  analyst:                         # unquoted names compare as Snowflake resolves them: upper case
    grants:
      - {privileges: [USAGE], object_type: warehouse, name: bi_wh}
      - {privileges: [USAGE], object_type: database, name: analytics}
      - {privileges: [USAGE], object_type: schema, name: analytics.marts}
      - {privileges: [SELECT], object_type: table, name: analytics.marts.orders}
      - {privileges: [CREATE DATABASE], object_type: account}
    granted_to:
      users: [alice, carol]
      roles: [sysadmin]
```

Names compare as Snowflake resolves identifiers: unquoted parts in upper case, `"quoted"` parts
as written, so `analytics.marts.orders` and `ANALYTICS.MARTS.ORDERS` are one table and
`ANALYTICS.MARTS."Orders"` another. GRANT OPTION and future grants (SHOW FUTURE GRANTS) are not
compared. The Pulumi proof of concept's desired state is not read yet: export it to this format.

What is present comes from SNOWFLAKE.ACCOUNT_USAGE (ROLES, GRANTS_TO_ROLES, GRANTS_TO_USERS; rows
with DELETED_ON set are dropped or revoked), readable with a viewer database role where SHOW GRANTS
on other roles would need MANAGE GRANTS. The views lag up to 2 hours: every finding says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rules.config import ConfigError
from rules.findings import Finding, Severity

KIND_NOT_DECLARED = "snowflake-grant-not-declared"
KIND_MISSING = "snowflake-grant-missing"
KIND_ROLE_MISSING = "snowflake-declared-role-missing"
DRIFT_KINDS = frozenset({KIND_NOT_DECLARED, KIND_MISSING, KIND_ROLE_MISSING})
AS_OF = "as of ACCOUNT_USAGE, up to 2 h behind"  # the views' documented latency: a grant of the last 2 h may not show


def split_identifier(name: str) -> list[str]:
    """The parts of a dotted name as Snowflake resolves them: unquoted upper-cased, quoted kept."""
    parts: list[str] = []
    current: list[str] = []
    quoted = in_quotes = False
    i = 0
    while i < len(name):
        c = name[i]
        if in_quotes:
            if c == '"' and name[i + 1:i + 2] == '"':  # "" inside quotes is one quote
                current.append('"')
                i += 1
            elif c == '"':
                in_quotes = False
            else:
                current.append(c)
        elif c == '"':
            in_quotes = quoted = True
        elif c == ".":
            parts.append("".join(current) if quoted else "".join(current).strip().upper())
            current, quoted = [], False
        else:
            current.append(c)
        i += 1
    if in_quotes:
        raise ValueError(f"{name!r} has an unclosed double quote")
    parts.append("".join(current) if quoted else "".join(current).strip().upper())
    return parts


def normal_identifier(name: str) -> str:
    """One spelling per object: parts that resolve to plain upper-case names unquoted, others quoted."""
    def show(part: str) -> str:
        plain = part and (part[0].isalpha() or part[0] == "_") and all(
            ch.isupper() or ch.isdigit() or ch in "_$" for ch in part)
        return part if plain else '"' + part.replace('"', '""') + '"'

    return ".".join(show(p) for p in split_identifier(name.strip()))


def quoted_identifier(resolved: str) -> str:
    """The identifier of a name as Snowflake stores it (already resolved: case is meaningful)."""
    return normal_identifier('"' + resolved.replace('"', '""') + '"')


def resolved_name(identifier: str) -> str:
    """A one-part identifier (`analyst`, `"Finance"`) as Snowflake stores it: `ANALYST`, `Finance`."""
    return ".".join(split_identifier(identifier))


def _words(value: str) -> str:
    """A privilege in Snowflake's spelling: upper case, single spaces."""
    return " ".join(value.split()).upper()


def _object_type(value: str) -> str:
    # One spelling for object types written with spaces or underscores (MATERIALIZED VIEW, DATABASE_ROLE).
    return "_".join(value.split()).upper()


def granted_object(granted_on: str, name: str | None, catalog: str | None, schema: str | None) -> str:
    """The qualified identifier of a GRANTS_TO_ROLES row's object: NAME is the bare name, its database
    and schema are in TABLE_CATALOG and TABLE_SCHEMA (each part as stored, so quoted where needed)."""
    kind = _object_type(granted_on)
    parents = [p for p in (catalog, schema) if p]
    if kind in ("ACCOUNT", "DATABASE"):
        parents = []
    elif kind in ("SCHEMA", "DATABASE_ROLE"):
        parents = parents[:1]
    return ".".join(quoted_identifier(p) for p in [*parents, name or ""])


class DeclaredGrant(BaseModel):
    """Privileges one role holds on one object (`name` is omitted for `object_type: account`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    privileges: list[str] = Field(min_length=1, description="Privileges, e.g. `[USAGE]`, `[SELECT, INSERT]`.")
    # Not `on`: YAML reads an unquoted `on:` key as the boolean true.
    object_type: str = Field(min_length=1, description="Object type as GRANTS_TO_ROLES.GRANTED_ON writes it: warehouse, database, schema, table, view, account, ...")
    name: str | None = Field(default=None, description="The object, fully qualified (`db.schema.table`); none for `account`.")

    @model_validator(mode="before")
    @classmethod
    def _no_yaml_on(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and True in data:
            raise ValueError("a key `on:` is read by YAML as true: write `object_type:` instead")
        return data

    @model_validator(mode="after")
    def _name_fits_type(self) -> DeclaredGrant:
        if _object_type(self.object_type) == "ACCOUNT":
            if self.name:
                raise ValueError("`name` is not used with `object_type: account`: leave it out")
        elif not self.name:
            raise ValueError(f"`name` is required with `object_type: {self.object_type}`: the object, "
                             "e.g. `analytics.marts.orders`")
        if self.name:
            split_identifier(self.name)  # an unclosed quote fails here, with the name
        return self


class GrantedTo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    users: list[str] = Field(default_factory=list, description="Users that hold the role.")
    roles: list[str] = Field(default_factory=list, description="Roles that inherit the role.")


class DeclaredRole(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    grants: list[DeclaredGrant] = Field(default_factory=list, description="What the role may do.")
    granted_to: GrantedTo = Field(default_factory=GrantedTo, description="Who holds the role.")


class DeclaredModel(BaseModel):
    """A declared role/grant model (one account)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ignore_privileges: list[str] = Field(
        default_factory=lambda: ["OWNERSHIP"],
        description="Privileges never compared; OWNERSHIP by default (a role owns what it creates).")
    roles: dict[str, DeclaredRole] = Field(min_length=1, description="Managed roles by name.")

    @field_validator("roles")
    @classmethod
    def _one_spelling_per_role(cls, roles: dict[str, DeclaredRole]) -> dict[str, DeclaredRole]:
        names = [normal_identifier(r) for r in roles]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"roles {twice} are declared twice (names differing only in case are one role)")
        return roles


@dataclass(frozen=True, order=True)
class Privilege:
    """`role` holds `privilege` on the object `on` `name` (name is empty for the account)."""

    role: str
    privilege: str
    on: str
    name: str

    @property
    def target(self) -> str:
        return f"{self.on} {self.name}" if self.name else self.on

    @property
    def label(self) -> str:
        return f"{self.role}: {self.privilege} ON {self.target}"


@dataclass(frozen=True, order=True)
class Membership:
    """`role` is granted to the `grantee_type` (USER or ROLE) `grantee`."""

    role: str
    grantee_type: str
    grantee: str

    @property
    def label(self) -> str:
        return f"{self.role}: granted to {self.grantee_type} {self.grantee}"


def privilege(role: str, priv: str, on: str, name: str | None) -> Privilege:
    kind = _object_type(on)
    return Privilege(normal_identifier(role), _words(priv), kind,
                     "" if kind == "ACCOUNT" else normal_identifier(name or ""))


def membership(role: str, grantee_type: str, grantee: str) -> Membership:
    return Membership(normal_identifier(role), _object_type(grantee_type), normal_identifier(grantee))


@dataclass(frozen=True)
class Declared:
    """The model, normalised: the managed roles and every grant it declares."""

    roles: frozenset[str]
    privileges: frozenset[Privilege]
    memberships: frozenset[Membership]
    ignore_privileges: frozenset[str]


def parse_declared_grants(data: Any, origin: str) -> Declared:
    """Validate a loaded YAML model; an error names the file, the field and the fix."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: expected a mapping with `roles:` (see rules/snowflake_rbac_drift.py), "
                          f"got {type(data).__name__}.")
    try:
        model = DeclaredModel.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "roles"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{origin}: field `{where}`: {message} (format: rules/snowflake_rbac_drift.py).") from None
    privileges: set[Privilege] = set()
    memberships: set[Membership] = set()
    for role, spec in model.roles.items():
        for g in spec.grants:
            privileges |= {privilege(role, p, g.object_type, g.name) for p in g.privileges}
        memberships |= {membership(role, "USER", u) for u in spec.granted_to.users}
        memberships |= {membership(role, "ROLE", r) for r in spec.granted_to.roles}
    return Declared(frozenset(normal_identifier(r) for r in model.roles), frozenset(privileges),
                    frozenset(memberships), frozenset(_words(p) for p in model.ignore_privileges))


@dataclass(frozen=True)
class PresentGrants:
    """What the account says, for the managed roles (ACCOUNT_USAGE rows that are not deleted)."""

    roles: frozenset[str]  # roles that exist (ROLES)
    privileges: frozenset[Privilege]
    memberships: frozenset[Membership]


def present_grants(roles: Iterable[str], grants_to_roles: Iterable[Mapping[str, Any]],
                   grants_to_users: Iterable[Mapping[str, Any]]) -> PresentGrants:
    """From ROLES names, GRANTS_TO_ROLES rows and GRANTS_TO_USERS rows (lower-case keys); a row
    with DELETED_ON set was revoked and is left out.

    A role granted to a role is a GRANTS_TO_ROLES row `USAGE ON ROLE <granted role>` whose grantee
    is the holder: it is read as a holder of the granted role, so each membership counts once.
    """
    live_roles = [g for g in grants_to_roles if g.get("deleted_on") is None]
    # Role and user names come back as stored (case kept, no quotes).
    return PresentGrants(
        frozenset(quoted_identifier(r) for r in roles),
        frozenset(privilege(quoted_identifier(g["grantee_name"]), g["privilege"], g["granted_on"],
                            granted_object(g["granted_on"], g["name"], g.get("table_catalog"), g.get("table_schema")))
                  for g in live_roles if _object_type(g["granted_on"]) != "ROLE"),
        frozenset({membership(quoted_identifier(g["name"]), "ROLE", quoted_identifier(g["grantee_name"]))
                   for g in live_roles if _object_type(g["granted_on"]) == "ROLE"}
                  | {membership(quoted_identifier(g["role"]), "USER", quoted_identifier(g["grantee_name"]))
                     for g in grants_to_users if g.get("deleted_on") is None}),
    )


def judge_grant_drift(account: str, declared: Declared, present: PresentGrants, model_origin: str) -> list[Finding]:
    """Drift findings for one account; only the declared roles are compared."""
    found = []
    missing_roles = declared.roles - present.roles
    for role in sorted(missing_roles):
        found.append(Finding(
            kind=KIND_ROLE_MISSING, resource_id=role, scope=account, severity=Severity.WARNING,
            reason=f"Role {role} is declared in {model_origin} but does not exist (roles {AS_OF}): create it "
                   "with its grants (apply the model), or remove it from the model.",
            numbers={"role": role}))

    def compared(p: Privilege) -> bool:
        return p.privilege not in declared.ignore_privileges and p.role in declared.roles - missing_roles

    have = {p for p in present.privileges if compared(p)}
    want = {p for p in declared.privileges if compared(p)}
    have_members = {m for m in present.memberships if m.role in declared.roles - missing_roles}
    want_members = {m for m in declared.memberships if m.role not in missing_roles}
    for p in sorted(have - want):
        found.append(Finding(
            kind=KIND_NOT_DECLARED, resource_id=p.label, scope=account, severity=Severity.WARNING,
            reason=f"Role {p.role} holds {p.privilege} ON {p.target}, which {model_origin} does not declare "
                   f"(grants {AS_OF}): REVOKE {p.privilege} ON {p.target} FROM ROLE {p.role}, or add it to the model.",
            numbers={"role": p.role, "privilege": p.privilege, "object_type": p.on, "object": p.name}))
    for p in sorted(want - have):
        found.append(Finding(
            kind=KIND_MISSING, resource_id=p.label, scope=account, severity=Severity.WARNING,
            reason=f"{model_origin} declares {p.privilege} ON {p.target} for role {p.role}, but the account "
                   f"does not grant it (grants {AS_OF}): apply the model, or remove the grant from it.",
            numbers={"role": p.role, "privilege": p.privilege, "object_type": p.on, "object": p.name}))
    for m in sorted(have_members - want_members):
        found.append(Finding(
            kind=KIND_NOT_DECLARED, resource_id=m.label, scope=account, severity=Severity.WARNING,
            reason=f"Role {m.role} is granted to {m.grantee_type} {m.grantee}, which {model_origin} does not "
                   f"declare (grants {AS_OF}): REVOKE ROLE {m.role} FROM {m.grantee_type} {m.grantee}, "
                   "or add it to the model.",
            numbers={"role": m.role, "privilege": "USAGE", "object_type": "ROLE", "object": m.role,
                     "grantee_type": m.grantee_type, "grantee": m.grantee}))
    for m in sorted(want_members - have_members):
        found.append(Finding(
            kind=KIND_MISSING, resource_id=m.label, scope=account, severity=Severity.WARNING,
            reason=f"{model_origin} grants role {m.role} to {m.grantee_type} {m.grantee}, but the account does "
                   f"not (grants {AS_OF}): apply the model, or remove the grant from it.",
            numbers={"role": m.role, "privilege": "USAGE", "object_type": "ROLE", "object": m.role,
                     "grantee_type": m.grantee_type, "grantee": m.grantee}))
    return found
