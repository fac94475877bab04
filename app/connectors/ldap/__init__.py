"""Active Directory over LDAP: connections, full and incremental reads, bind-through checks."""

import warnings

# ldap3 2.9.1 imports names pyasn1 >= 0.6 deprecated (tagMap, typeMap); under pytest's
# `filterwarnings = error` that import would fail. Import it once here with the warning muted.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ldap3\..*")
    import ldap3  # noqa: F401
