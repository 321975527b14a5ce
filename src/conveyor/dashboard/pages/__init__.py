"""The browser dashboard's pages: server-rendered HTML (standard library only, every value
escaped), one module per page, plus the shared layout, charts and the small static script that
refreshes a page's live region. No Starlette here: `dashboard.ui` serves them."""
