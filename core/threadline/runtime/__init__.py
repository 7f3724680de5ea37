"""The agent runtime: agents, the chat turn, providers, tools, persistence contexts."""
