"""Client library for the opencc-cm-escalation content-moderation classifier on Triton."""
