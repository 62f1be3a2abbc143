"""The hands: sandboxed tool execution over NATS (arrives with the hands issue).

Never imports `session_store`: hands hold no credentials and never touch the log.
"""
