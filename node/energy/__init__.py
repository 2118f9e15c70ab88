"""maillage.node.energy: the site's energy signal (file, HTTP or solar model sources, `signal`, `sources`,
`solar`), the rule deciding when deferrable background work runs (`decide`, pure), and the scheduler
the background loops ask (`scheduler`). See ARCHITECTURE.md, "Energy"."""
