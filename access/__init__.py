"""Who may do what: the one authorization policy (role, action, scope)."""
