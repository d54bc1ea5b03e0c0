"""The echo canceller on the capture path: the parts that take the agent's voice out of the mic."""
