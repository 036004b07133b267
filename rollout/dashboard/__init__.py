"""``rollout dashboard``: a live view of the state store, with Roll back and Approve behind a token."""
