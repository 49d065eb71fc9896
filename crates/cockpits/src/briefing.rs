//! The daily briefing (城市日报): one page per cockpit.
