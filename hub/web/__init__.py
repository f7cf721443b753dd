"""The provider workspace: server-rendered pages (Jinja2), session login, CSRF, tenancy by clinic."""
