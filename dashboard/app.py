"""The dashboard's entry point, what `pioneer-telemetry dashboard` runs with `streamlit run`.

Login (when OIDC is configured), the filters every page shares (bound to URL query parameters), and
the pages: the overview, a user's page and a notebook's page. The pages only read the worker's API.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import ui
from dashboard.settings import DashboardSettings

VIEWS = Path(__file__).parent / "views"


def _groups(claims: object) -> set[str]:
    """Keycloak puts group paths ("/admin", "/projects/x") or plain names in the `groups` claim."""
    groups = claims if isinstance(claims, list) else [claims] if isinstance(claims, str) else []
    return {str(g) for g in groups} | {str(g).strip("/").rsplit("/", 1)[-1] for g in groups}


def logged_in(settings: DashboardSettings) -> bool:
    """Without OIDC settings everyone who reaches the page may see it (it binds to localhost by default)."""
    if not settings.oidc_enabled:
        return True
    if not st.user.is_logged_in:
        st.title("Pioneer telemetry")
        st.write("Sign in with your Nebari account to see what happens on the platform.")
        st.button("Log in", on_click=st.login, icon=":material/login:", type="primary")
        return False
    who = st.user.get("email") or st.user.get("preferred_username") or st.user.get("name") or "you"
    allowed = set(settings.oidc_allowed_groups)
    if allowed and not allowed & _groups(st.user.get("groups")):
        st.error(
            f"Signed in as {who}, but not in a group allowed to see this page: {', '.join(sorted(allowed))}."
        )
        st.button("Log out", on_click=st.logout, icon=":material/logout:")
        return False
    with st.sidebar:
        st.caption(f"Signed in as {who}")
        st.button("Log out", on_click=st.logout, icon=":material/logout:", type="tertiary")
    return True


st.set_page_config(page_title="Pioneer telemetry", page_icon=":material/monitoring:", layout="wide")
if not logged_in(ui.settings()):
    st.stop()
page = st.navigation(
    [
        st.Page(VIEWS / "overview.py", title="Overview", icon=":material/monitoring:", default=True),
        st.Page(VIEWS / "user.py", title="User", icon=":material/person:", url_path="user"),
        st.Page(VIEWS / "notebook.py", title="Notebook", icon=":material/description:", url_path="notebook"),
    ],
    position="top",
)
ui.follow_open_page()
ui.sidebar_filters()
page.run()
ui.follow_changes()
