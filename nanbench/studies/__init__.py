"""Studies built on run + tracking: the documents' examples and their claims, and the stability
boundary. Each is a small package; none is imported by the core (spec → ... → summary)."""
