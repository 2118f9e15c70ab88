"""`maillage console`: a web console for the whole mesh (fleet, sites, policies, buckets per tenant).

`app` serves it (login, pages, JSON), `fleet` is what it shows, `mesh_source` reads a real mesh with
the logged-in operator's admin key, `synthetic` simulates a large fleet, `sessions` keeps logins,
`tls` makes the default self-signed certificate; `static/` holds the page (HTML, CSS, JS).
"""
