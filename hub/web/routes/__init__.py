"""Page routes, one module per area of the workspace."""
