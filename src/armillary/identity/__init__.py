"""The identity service: users, roles, tokens, projects, memberships and the audit chain."""
