"""The gateway: keel over HTTP (arrives with the gateway issue)."""
