"""The tenant admin console: a tenant's admin decides support access in a browser."""
