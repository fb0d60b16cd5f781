"""Attribution (see issue 6)."""
